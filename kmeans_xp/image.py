"""Colour quantisation: k-means on the pixels of an image.

The palette is fitted on a random sample of pixels (a few tens of thousands
are plenty for 16 colours), then every pixel is mapped to its nearest palette
colour in chunks, so a 12-megapixel photo never has a float copy, let alone
a (pixels x colours) matrix, in memory at once. Everything runs in the
image's namespace and on its device; Pillow is not needed here (only the
command line reads and writes image files).
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np

from ._array_api import (
    array_namespace,
    device_of,
    index_dtype,
    is_array_api_obj,
    supports_float64,
    to_device_array,
)
from ._kmeans import KMeans
from ._validation import _isdtype, check_random_state
from .exceptions import ConvergenceWarning, InvalidParameterError

__all__ = ["quantize_image"]

#: Pixels per chunk of the final assignment (float copy of ~3 MiB for RGB).
_CHUNK_PIXELS = 1 << 18


def quantize_image(
    image,
    n_colors: int,
    *,
    channel_axis: int | None = None,
    sample_size: int | None = 50_000,
    random_state=None,
    max_iter: int = 100,
):
    """Reduce an image to ``n_colors`` colours with k-means.

    Parameters
    ----------
    image : array of shape (H, W, C), (C, H, W) or (H, W)
        uint8 (or any integer) or floating pixels, in any array-API namespace
        and device (or anything ``numpy.asarray`` accepts). Never modified.
    n_colors : int
        Size of the palette, between 1 and the number of pixels.
    channel_axis : {None, -1, 0}, default=None
        Axis of the colour channels of a 3-D image: -1 (or 2) for (H, W, C),
        0 (or -3) for PyTorch's (C, H, W). None tells them apart by their
        sizes: the channel axis is the end axis of size 1, 3 or 4 when only
        one end has such a size; otherwise (e.g. shape (3, 5, 4), or 8
        channels) a ValueError asks for ``channel_axis``. Ignored for a 2-D
        (grey) image.
    sample_size : int or None, default=50_000
        Pixels the palette is fitted on, drawn without replacement; None
        fits on every pixel.
    random_state : None, int or numpy.random.Generator
        Seeds the pixel sample and k-means++.
    max_iter : int, default=100
        Lloyd iterations of the fit.

    Returns
    -------
    quantized : array of the shape, dtype, namespace and device of ``image``
        Every pixel replaced by its palette colour.
    palette : array of shape (n_colors, C) (or (n_colors,) for grey images)
        In the image's dtype: integer images get rounded, clipped colours.
        If the image has fewer distinct colours than ``n_colors``, some
        palette entries repeat.

    Examples
    --------
    >>> import numpy as np
    >>> from kmeans_xp import quantize_image
    >>> rng = np.random.default_rng(0)
    >>> image = rng.integers(0, 256, size=(32, 48, 3), dtype=np.uint8)
    >>> quantized, palette = quantize_image(image, 4, random_state=0)
    >>> quantized.shape, quantized.dtype, palette.shape
    ((32, 48, 3), dtype('uint8'), (4, 3))
    >>> len(np.unique(quantized.reshape(-1, 3), axis=0))
    4
    """
    if not is_array_api_obj(image):
        try:
            image = np.asarray(image)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"image must be an array, got {type(image).__name__}: {exc}") from None
    xp = array_namespace(image)
    device = device_of(image)
    pixels, restore = _pixels_channel_last(image, xp, channel_axis)
    n_pixels = pixels.shape[0]
    if n_pixels == 0:
        raise ValueError(f"image has no pixels (shape {tuple(image.shape)}).")
    dtype = image.dtype
    is_integer = _isdtype(xp, dtype, "integral")
    if not is_integer and not _isdtype(xp, dtype, "real floating"):
        raise TypeError(f"image must have an integer or real floating dtype, got {dtype}.")
    if (
        isinstance(n_colors, bool)
        or not isinstance(n_colors, (numbers.Integral, np.integer))
        or not 1 <= n_colors <= n_pixels
    ):
        raise InvalidParameterError(
            f"n_colors must be an int between 1 and the number of pixels ({n_pixels}), "
            f"got {n_colors!r}."
        )
    if sample_size is not None and (
        isinstance(sample_size, bool)
        or not isinstance(sample_size, (numbers.Integral, np.integer))
        or sample_size < n_colors
    ):
        raise InvalidParameterError(
            f"sample_size must be None or an int >= n_colors ({n_colors}), got {sample_size!r}."
        )
    if not is_integer and not bool(xp.all(xp.isfinite(image))):
        raise ValueError("image contains NaN or infinity.")
    # float32 is exact for 8- and 16-bit channels; float64 images keep float64.
    work = xp.float64 if dtype == xp.float64 and supports_float64(xp, device) else xp.float32
    rng = check_random_state(random_state)

    if sample_size is None or sample_size >= n_pixels:
        sample = xp.astype(pixels, work)
    else:
        chosen = np.sort(rng.choice(n_pixels, size=int(sample_size), replace=False))
        indices = to_device_array(chosen, xp, dtype=index_dtype(xp, device), device=device)
        sample = xp.astype(xp.take(pixels, indices, axis=0), work)
    model = KMeans(n_clusters=int(n_colors), n_init=1, max_iter=max_iter, random_state=rng)
    with warnings.catch_warnings():
        # Fewer distinct colours than asked is documented, not an error.
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(sample)
    palette = _palette_in_dtype(model.cluster_centers_, dtype, xp, is_integer)

    chunks = []
    for start in range(0, n_pixels, _CHUNK_PIXELS):
        stop = min(start + _CHUNK_PIXELS, n_pixels)
        block = xp.astype(pixels[start:stop, :], work)
        chunks.append(xp.take(palette, model.predict(block), axis=0))
    quantized = chunks[0] if len(chunks) == 1 else xp.concat(chunks)
    return restore(quantized), (palette[:, 0] if image.ndim == 2 else palette)


def _pixels_channel_last(image, xp, channel_axis):
    """A (n_pixels, C) view (or copy) of the image and a function that puts
    a (n_pixels, C) array back into the image's layout."""
    shape = tuple(image.shape)
    if image.ndim == 2:
        height, width = shape
        return xp.reshape(image, (height * width, 1)), lambda p: xp.reshape(p, (height, width))
    if image.ndim != 3:
        raise ValueError(
            f"image must be 2-D (H, W) or 3-D (H, W, C) / (C, H, W), got shape {shape}."
        )
    if channel_axis is None:
        channel_axis = _guess_channel_axis(shape)
    if channel_axis in (-1, 2):
        height, width, channels = shape
        return (
            xp.reshape(image, (height * width, channels)),
            lambda p: xp.reshape(p, (height, width, channels)),
        )
    if channel_axis in (0, -3):
        channels, height, width = shape
        hwc = xp.permute_dims(image, (1, 2, 0))
        return (
            xp.reshape(hwc, (height * width, channels)),
            lambda p: xp.permute_dims(xp.reshape(p, (height, width, channels)), (2, 0, 1)),
        )
    raise InvalidParameterError(f"channel_axis must be None, -1 or 0, got {channel_axis!r}.")


#: Channel counts of grey, RGB and RGBA images.
_CHANNEL_SIZES = (1, 3, 4)


def _guess_channel_axis(shape) -> int:
    """-1 or 0: the one end of ``shape`` whose size is a channel count; a
    ValueError naming ``channel_axis`` when both ends or neither are."""
    first, last = shape[0] in _CHANNEL_SIZES, shape[-1] in _CHANNEL_SIZES
    if last and not first:
        return -1
    if first and not last:
        return 0
    which = "both ends of the shape have" if first else "neither end of the shape has"
    raise ValueError(
        f"cannot tell the channel axis of an image of shape {shape}: {which} "
        "1, 3 or 4 entries. Pass channel_axis=-1 for (H, W, C) or channel_axis=0 "
        "for (C, H, W)."
    )


def _palette_in_dtype(centers, dtype, xp, is_integer: bool):
    """Centres as colours of the image's dtype (rounded and clipped for
    integer images, so uint8 never wraps around)."""
    if not is_integer:
        return xp.astype(centers, dtype)
    info = xp.iinfo(dtype)
    rounded = xp.clip(xp.round(centers), min=float(info.min), max=float(info.max))
    return xp.astype(rounded, dtype)
