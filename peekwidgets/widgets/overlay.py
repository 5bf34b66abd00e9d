"""A component's spatial map drawn over input images, as translucent diverging colour.

Pixels only (numpy and PIL), no widget library: the gallery draws what :func:`overlay_map`
returns.
"""

from __future__ import annotations

import numpy as np
from PIL import Image as PILImage

from peekwidgets.images import InputImages

__all__ = ["OVERLAY_ALPHA", "overlay_map"]

#: Opacity of the overlay where the map is strongest (it fades to 0 where the map is 0).
OVERLAY_ALPHA = 0.6


def _upsample(spatial: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``spatial (h, w)`` -> ``(H, W)`` by bilinear interpolation (``size = (H, W)``)."""
    im = PILImage.fromarray(np.asarray(spatial, dtype=np.float32), mode="F")
    return np.asarray(im.resize((size[1], size[0]), PILImage.BILINEAR), dtype=float)


def overlay_map(pixels: np.ndarray, spatial: np.ndarray,
                alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """Draw a signed spatial map over images.

    The map is upsampled to the images' size (bilinear: positions are stretched over the
    image, not traced through receptive fields), scaled by its largest magnitude and coloured
    on the diverging palette (blue positive, red negative); its opacity is ``alpha`` times the
    scaled magnitude, so the input shows through where the map is near 0.

    Parameters
    ----------
    pixels : (k, H, W) or (k, H, W, 3) uint8
        Display pixels of ``k`` images (:meth:`InputImages.to_uint8`).
    spatial : (h, w) array
        The map (for example a component's factor ``V`` of a conv block, reshaped).
    alpha : float
        Opacity where the map is strongest.

    Returns
    -------
    (k, H, W, 3) uint8
    """
    pixels = np.asarray(pixels)
    if pixels.ndim == 3:
        pixels = np.repeat(pixels[..., None], 3, axis=-1)
    size = pixels.shape[1:3]
    heat = _upsample(spatial, size)
    scale = float(np.abs(heat).max()) or 1.0
    colors = InputImages((1, *size)).pattern_uint8(heat).astype(float)  # (H, W, 3)
    a = (alpha * np.abs(heat) / scale)[..., None]
    out = pixels.astype(float) * (1 - a) + colors[None] * a
    return out.round().clip(0, 255).astype(np.uint8)
