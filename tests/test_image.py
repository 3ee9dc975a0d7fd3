"""quantize_image: palette and quantised image in the input's namespace,
device, dtype and layout; colours recovered from a blocky test image."""

import numpy as np
import pytest

from kmeans_xp import image as image_module
from kmeans_xp import quantize_image
from kmeans_xp._testing import assert_array_like, to_numpy

COLORS = np.array([[250, 10, 10], [10, 240, 20], [20, 20, 230], [240, 240, 240]])


def _blocky(rng, height=24, width=32, noise=3.0):
    """Four colour quadrants plus a little noise, as uint8 (H, W, 3)."""
    image = np.empty((height, width, 3))
    h, w = height // 2, width // 2
    for i, (rows, cols) in enumerate(
        [(slice(0, h), slice(0, w)), (slice(0, h), slice(w, None)),
         (slice(h, None), slice(0, w)), (slice(h, None), slice(w, None))]
    ):
        image[rows, cols] = COLORS[i]
    image += rng.normal(0.0, noise, image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _check_palette(palette_np, scale=1.0):
    found = palette_np[np.lexsort(palette_np.T[::-1])].astype(float) / scale
    expected = COLORS[np.lexsort(COLORS.T[::-1])]
    np.testing.assert_allclose(found, expected, atol=3.0)


def test_uint8_hwc_on_every_backend(xp, to_xp, rng):
    image = _blocky(rng)
    image_xp = to_xp(image)
    quantized, palette = quantize_image(image_xp, 4, random_state=0)
    assert_array_like(quantized, image_xp)
    assert_array_like(palette, image_xp)
    assert tuple(quantized.shape) == image.shape and tuple(palette.shape) == (4, 3)
    palette_np, quantized_np = to_numpy(palette), to_numpy(quantized)
    _check_palette(palette_np)
    # Every pixel is a palette colour, the one of its quadrant.
    assert {tuple(c) for c in quantized_np.reshape(-1, 3)} == {tuple(c) for c in palette_np}
    assert len({tuple(c) for c in quantized_np[:12, :16].reshape(-1, 3)}) == 1
    np.testing.assert_array_equal(to_numpy(image_xp), image)  # input untouched


def test_float_chw_on_every_backend(xp, to_xp, rng):
    image = _blocky(rng).astype(np.float32) / 255.0
    chw = to_xp(np.ascontiguousarray(image.transpose(2, 0, 1)))
    quantized, palette = quantize_image(chw, 4, channel_axis=0, random_state=0)
    assert_array_like(quantized, chw)
    assert_array_like(palette, chw)
    assert tuple(quantized.shape) == (3, 24, 32)
    _check_palette(to_numpy(palette), scale=1 / 255.0)
    quantized_np = to_numpy(quantized)
    assert len(np.unique(quantized_np.reshape(3, -1), axis=1).T) == 4


def test_grey_image_and_float64(rng):
    grey = np.repeat(np.array([0.1, 0.5, 0.9]), 40)[:, None] * np.ones((1, 10))
    quantized, palette = quantize_image(grey + rng.normal(0, 0.01, grey.shape), 3, random_state=0)
    assert quantized.shape == grey.shape and quantized.dtype == np.float64
    assert palette.shape == (3,)
    np.testing.assert_allclose(np.sort(palette), [0.1, 0.5, 0.9], atol=0.01)


def test_chunks_and_sample_give_the_same_image(monkeypatch, rng):
    image = _blocky(rng, height=40, width=50)
    whole, palette = quantize_image(image, 4, random_state=3, sample_size=None)
    monkeypatch.setattr(image_module, "_CHUNK_PIXELS", 97)
    chunked, palette2 = quantize_image(image, 4, random_state=3, sample_size=None)
    np.testing.assert_array_equal(whole, chunked)
    np.testing.assert_array_equal(palette, palette2)
    sampled, _ = quantize_image(image, 4, random_state=3, sample_size=200)
    assert len(np.unique(sampled.reshape(-1, 3), axis=0)) == 4


def test_fewer_colours_than_asked_repeat_in_the_palette():
    image = np.zeros((4, 4, 3), dtype=np.uint8)
    image[:2] = 200
    quantized, palette = quantize_image(image, 3, channel_axis=-1, random_state=0)
    assert len(np.unique(palette, axis=0)) == 2
    np.testing.assert_array_equal(quantized, image)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"n_colors": 0}, ValueError, "n_colors"),
        ({"n_colors": 2.5}, ValueError, "n_colors"),
        ({"n_colors": 10_000}, ValueError, "n_colors"),
        ({"n_colors": 4, "sample_size": 2}, ValueError, "sample_size"),
        ({"n_colors": 4, "channel_axis": 1}, ValueError, "channel_axis"),
    ],
)
def test_bad_parameters(kwargs, error, match, rng):
    with pytest.raises(error, match=match):
        quantize_image(_blocky(rng), **kwargs)


def test_bad_images():
    with pytest.raises(ValueError, match="2-D"):
        quantize_image(np.zeros((2, 2, 2, 3)), 2)
    with pytest.raises(TypeError, match="dtype"):
        quantize_image(np.zeros((5, 4, 3), dtype=bool), 2)
    bad = np.zeros((5, 4, 3))
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        quantize_image(bad, 2)


# Layout detection when channel_axis is not given (issue 20: a (C, H, W)
# image used to be quantised as if its width were its channels).


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_channels_first_is_detected_by_its_size(channels, rng):
    hwc = _blocky(rng)[..., :channels] if channels < 4 else np.concatenate(
        [_blocky(rng), np.full((24, 32, 1), 255, dtype=np.uint8)], axis=-1
    )
    chw = np.ascontiguousarray(np.moveaxis(hwc, -1, 0))
    guessed, guessed_palette = quantize_image(chw, 4, random_state=0)
    told, told_palette = quantize_image(chw, 4, channel_axis=0, random_state=0)
    assert guessed.shape == chw.shape and guessed_palette.shape == (4, channels)
    np.testing.assert_array_equal(guessed, told)
    np.testing.assert_array_equal(guessed_palette, told_palette)
    as_hwc, _ = quantize_image(hwc, 4, random_state=0)
    np.testing.assert_array_equal(np.moveaxis(guessed, 0, -1), as_hwc)


def test_channels_first_torch_tensor_is_detected(rng):
    torch = pytest.importorskip("torch")
    chw = torch.asarray(np.ascontiguousarray(np.moveaxis(_blocky(rng), -1, 0)))
    quantized, palette = quantize_image(chw, 4, random_state=0)
    assert tuple(quantized.shape) == (3, 24, 32) and tuple(palette.shape) == (4, 3)
    _check_palette(to_numpy(palette))


@pytest.mark.parametrize(
    "shape, which",
    [((3, 5, 4), "both ends"), ((4, 6, 3), "both ends"), ((6, 5, 8), "neither end")],
)
def test_ambiguous_layouts_are_refused_naming_channel_axis(shape, which):
    image = np.zeros(shape, dtype=np.uint8)
    with pytest.raises(ValueError, match=f"{which}.*channel_axis=-1.*channel_axis=0"):
        quantize_image(image, 2)
    # Saying which axis it is settles it.
    quantized, palette = quantize_image(image, 1, channel_axis=-1)
    assert quantized.shape == shape and palette.shape == (1, shape[-1])
    quantized, palette = quantize_image(image, 1, channel_axis=0)
    assert quantized.shape == shape and palette.shape == (1, shape[0])
