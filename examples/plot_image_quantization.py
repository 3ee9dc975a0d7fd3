"""
Colour quantisation of an image
===============================

:func:`kmeans_xp.quantize_image` fits a palette of ``n_colors`` colours on
a sample of the pixels and maps every pixel to its nearest palette colour.
The image here is drawn by the script (smooth gradients and a few shapes),
so the example needs no image file.
"""

import matplotlib.pyplot as plt
import numpy as np

from kmeans_xp import quantize_image

# %%
# A 240 x 320 RGB image, uint8, in (H, W, C) layout.
height, width = 240, 320
yy, xx = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
image = np.stack([xx, yy, 1.0 - 0.5 * (xx + yy)], axis=-1)
disc = (xx - 0.3) ** 2 + (yy - 0.5) ** 2 < 0.04
square = (abs(xx - 0.72) < 0.12) & (abs(yy - 0.35) < 0.18)
image[disc] = [0.95, 0.8, 0.1]
image[square] = [0.1, 0.5, 0.2]
image = np.round(255 * image).astype(np.uint8)

# %%
# Quantise to 4, 8 and 16 colours. The result keeps the image's shape and
# dtype; the palette holds the colours.
results = {k: quantize_image(image, k, random_state=0) for k in (4, 8, 16)}
quantized, palette = results[8]
print(quantized.shape, quantized.dtype, palette.shape)
print(palette)

fig, axes = plt.subplots(2, 2, figsize=(9, 7), layout="constrained")
panels = [("original", image)] + [(f"{k} colours", results[k][0]) for k in results]
for ax, (title, picture) in zip(axes.flat, panels):
    ax.imshow(picture)
    ax.set_title(title)
    ax.set_axis_off()
plt.show()

# %%
# PyTorch keeps images as (C, H, W). The layout is recognised from the
# sizes (an end axis of 1, 3 or 4 channels); pass ``channel_axis=0`` or
# ``-1`` when the shape alone cannot tell, e.g. a 3 x 5 x 4 array.
chw = np.ascontiguousarray(np.moveaxis(image, -1, 0))
quantized_chw, palette_chw = quantize_image(chw, 8, random_state=0)
print(chw.shape, "->", quantized_chw.shape, "palette", palette_chw.shape)
try:
    quantize_image(np.zeros((3, 5, 4), dtype=np.uint8), 2)
except ValueError as error:
    print(error)
