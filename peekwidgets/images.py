"""Input images: raw samples and input-space patterns as display pixels and PNG bytes.

One scaling serves every front end: the widgets (:class:`peekwidgets.widgets.InputRenderer`
adds display tiles) and the matplotlib report draw the same pixels. Images (grayscale or RGB)
are denormalized with a user-settable ``mean``/``std``, or mapped from one global value range
``[vmin, vmax]`` (the same for every sample). A volume (a video clip, a 3-D scan) is drawn as a
filmstrip of its frames (:func:`filmstrip`); an input whose sides differ more than
:data:`MAX_ASPECT` times (a signal ``(1, L)``) is not an image: the views plot its values. No
widget library is imported here.
"""

from __future__ import annotations

import io
import warnings
from collections import OrderedDict

import numpy as np
from PIL import Image as PILImage
from PIL import ImageColor

from peekwidgets.palette import DIVERGING_HEX

__all__ = ["InputImages", "filmstrip", "map_2d", "FRAMES", "MAX_ASPECT"]

#: Frames of a volume ``(D, H, W)`` drawn side by side, evenly spaced when it has more.
FRAMES = 8

#: An input whose height and width differ more than this many times is drawn as values.
MAX_ASPECT = 8

#: ``(n_colors, 3)`` RGB of the diverging palette.
_DIVERGING = np.array([ImageColor.getrgb(c) for c in DIVERGING_HEX], dtype=float)


def _diverging(values: np.ndarray) -> np.ndarray:
    """``values`` in [-1, 1] -> uint8 RGB through the diverging palette."""
    pos = (np.clip(values, -1, 1) + 1) / 2 * (len(_DIVERGING) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(_DIVERGING) - 2)
    frac = (pos - lo)[..., None]
    rgb = _DIVERGING[lo] * (1 - frac) + _DIVERGING[lo + 1] * frac
    return rgb.round().astype(np.uint8)


def filmstrip(volume: np.ndarray, most: int = FRAMES, gap: int = 0, fill=0) -> np.ndarray:
    """``volume : (..., D, H, W)`` -> ``(..., H, k * W + (k - 1) * gap)``: ``k = min(D,
    most)`` evenly spaced frames side by side, ``gap`` columns of ``fill`` between them."""
    depth = volume.shape[-3]
    frames = [volume[..., i, :, :]
              for i in np.unique(np.linspace(0, depth - 1, min(depth, most)).round().astype(int))]
    if gap:
        pad = np.full((*frames[0].shape[:-1], gap), fill, dtype=volume.dtype)
        frames = [part for frame in frames for part in (pad, frame)][1:]
    return np.concatenate(frames, axis=-1)


def map_2d(values: np.ndarray, spatial_shape=None) -> np.ndarray:
    """A component's loadings over a block's positions ``(S,)`` as the 2-D map that the views
    draw: over ``(H, W)`` as they are, over ``(D, H, W)`` as a filmstrip of the frames, over a
    sequence or a 1-D map as one row ``(1, S)``."""
    values = np.asarray(values)
    shape = tuple(spatial_shape or (values.size,))
    values = values.reshape(shape)
    if len(shape) == 3:
        return filmstrip(values)
    return values.reshape(1, -1) if len(shape) == 1 else values


def _chw(shape) -> tuple | None:
    """``shape`` as a tuple of ints, ``(H, W)`` as ``(1, H, W)``; None stays None."""
    if shape is None:
        return None
    shape = tuple(int(s) for s in shape)
    return (1, *shape) if len(shape) == 2 else shape


def _block_image_shape(block) -> tuple:
    """``(C, h, w)`` of a block whose features form an image (its ``spatial_shape``)."""
    channels = block.shape[1] if block.kind == "tensor" else 1
    return (channels, *block.spatial_shape)


class InputImages:
    """Draws raw model inputs and input-space component patterns as pixels.

    Parameters
    ----------
    sample_shape : tuple of int, optional
        Shape of one input as drawn: ``(C, H, W)`` with C in (1, 3), or ``(H, W)``
        for images, ``(C, D, H, W)`` for volumes (drawn as a filmstrip of at most
        :data:`FRAMES` frames); anything else (or None), and an image whose sides
        differ more than :data:`MAX_ASPECT` times, is not an image (``is_image`` is
        False).
    mean, std : float or sequence of float, optional
        The normalization applied to the inputs (per channel); the display
        shows ``x * std + mean`` clipped to [0, 1]. When both are None the
        display maps ``[vmin, vmax]`` to black..white instead.
    vmin, vmax : float, optional
        Display range used when ``mean``/``std`` are not given; defaults to
        [0, 1] (:meth:`for_blocks` takes them from the input block).
    size : int
        Display size of an image tile in pixels (nearest-neighbour upscaling).
    cache_size : int
        PNG encodings kept per sample index, so unchanged images are not
        re-encoded.
    pattern_shape : tuple of int, optional
        Shape of an input-space pattern, when it differs from ``sample_shape``:
        a pooled input block's ``(C, h, w)``, drawn from thumbnails of another size.
    """

    def __init__(self, sample_shape=None, *, mean=None, std=None, vmin=None, vmax=None,
                 size: int = 72, cache_size: int = 4096, pattern_shape=None):
        self.sample_shape = _chw(sample_shape)
        self.pattern_shape = _chw(pattern_shape) or self.sample_shape
        shape = self.sample_shape
        self.is_image = shape is not None and shape[0] in (1, 3) and (
            len(shape) == 4 or len(shape) == 3 and max(shape[1:]) <= MAX_ASPECT * min(shape[1:]))
        self.mean = None if mean is None else np.asarray(mean, dtype=float).reshape(-1)
        self.std = None if std is None else np.asarray(std, dtype=float).reshape(-1)
        if (self.mean is None) != (self.std is None):
            raise ValueError("pass both mean and std (the normalization of the inputs), or neither")
        if self.std is not None and np.any(self.std <= 0):
            raise ValueError(f"std must be positive, got {self.std.tolist()}")
        channels = None if shape is None else shape[0]
        for name, values in (("mean", self.mean), ("std", self.std)):
            if values is not None and len(values) not in (1, channels or len(values)):
                raise ValueError(
                    f"{name} has {len(values)} values for inputs of {channels} channels "
                    f"{tuple(shape)}; pass one per channel, or one for all")
        self.vmin = 0.0 if vmin is None else float(vmin)
        self.vmax = 1.0 if vmax is None else float(vmax)
        if not self.vmax > self.vmin:
            raise ValueError(f"vmax ({self.vmax}) must be greater than vmin ({self.vmin})")
        self.size = int(size)
        self._cache: OrderedDict = OrderedDict()
        self._cache_size = int(cache_size)

    @classmethod
    def for_blocks(cls, blocks, **kwargs) -> InputImages:
        """A renderer for the ``"input"`` block of ``blocks`` (its shape and value range).

        When the input block was pooled, the inputs are drawn from ``blocks.thumbnails``
        (their shape and range) and the patterns at the input block's grid.
        """
        shape = blocks.sample_shape
        if "input" not in blocks.names:
            return cls(shape, **kwargs)
        block = blocks["input"]
        if blocks.thumbnails is not None:  # a flattened input keeps its grid in its meta
            kwargs.setdefault("pattern_shape", _block_image_shape(block) if block.spatial_shape
                              else block.meta.get("flattened_from"))
            block = blocks.thumbnails
            shape = _block_image_shape(block)
        elif block.spatial_shape is not None and (shape is None or "pooled_from" in block.meta):
            shape = _block_image_shape(block)  # a pooled volume has no thumbnails
        rows = block.numpy(slice(0, min(block.n_samples, 2048)))
        if kwargs.get("mean") is None and kwargs.get("vmin") is None:
            kwargs["vmin"], kwargs["vmax"] = float(rows.min()), float(rows.max())
            if kwargs["vmax"] <= kwargs["vmin"]:
                kwargs["vmax"] = kwargs["vmin"] + 1.0
        images = cls(shape, **kwargs)
        if images.mean is not None and images.is_image:
            images._check_denormalized(rows)
        return images

    def _check_denormalized(self, rows: np.ndarray):
        """Warn when ``x * std + mean`` of some inputs ``rows`` falls far outside the drawn
        [0, 1]: a mean and std on the 0-255 scale, or of another normalization."""
        x = rows.reshape(len(rows), len(self.mean) if len(self.mean) > 1 else 1, -1)
        shown = x * self.std.reshape(1, -1, 1) + self.mean.reshape(1, -1, 1)
        lo, hi = float(np.percentile(shown, 1)), float(np.percentile(shown, 99))
        if lo < -0.5 or hi > 1.5:
            scale = (" (they look like the 0-255 scale: divide them by 255)"
                     if hi > 25 else "")
            warnings.warn(
                f"mean={self.mean.tolist()} and std={self.std.tolist()} turn the inputs into "
                f"values from {lo:.3g} to {hi:.3g} (1st to 99th percentile), but images are "
                f"drawn from [0, 1], so they show clipped{scale}; pass the mean and std that "
                "normalized the inputs, on the scale of the unnormalized pixels in [0, 1]",
                UserWarning, stacklevel=3)

    def params(self) -> dict:
        """The keyword parameters that draw like this one (``InputImages(shape, **params)``)."""
        return {"mean": self.mean, "std": self.std, "vmin": self.vmin, "vmax": self.vmax,
                "size": self.size, "cache_size": self._cache_size,
                "pattern_shape": self.pattern_shape}

    # -- images ----------------------------------------------------------------------------
    def _as_chw(self, x: np.ndarray, shape=None) -> np.ndarray:
        shape = shape or self.sample_shape
        x = np.asarray(x, dtype=float)
        if x.size != int(np.prod(shape)):
            what = "sample_shape" if shape == self.sample_shape else "pattern_shape"
            raise ValueError(
                f"an input of {x.size} values does not match {what} {shape}; "
                "pass the sample_shape of the model's inputs to the renderer"
            )
        return x.reshape(shape)

    @property
    def pixel_shape(self) -> tuple:
        """``(H, W)`` of the display pixels of one input (a volume's filmstrip is wider)."""
        return self.to_uint8(np.zeros(int(np.prod(self.sample_shape)))).shape[:2]

    def to_uint8(self, x: np.ndarray) -> np.ndarray:
        """One input -> display pixels ``(H, W)`` or ``(H, W, 3)`` uint8."""
        img = self._as_chw(x)
        channel = (-1, *[1] * (img.ndim - 1))
        if self.mean is not None:
            img = img * self.std.reshape(channel) + self.mean.reshape(channel)
        else:
            img = (img - self.vmin) / (self.vmax - self.vmin)
        img = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
        if img.ndim == 4:
            img = filmstrip(img, gap=1, fill=255)
        return img[0] if img.shape[0] == 1 else np.moveaxis(img, 0, -1)

    def pattern_uint8(self, p: np.ndarray) -> np.ndarray:
        """An input-space pattern (signed) -> display pixels.

        Grayscale patterns use the diverging palette (red negative, blue
        positive, white zero); RGB patterns map zero to mid-grey.
        """
        img = self._as_chw(p, self.pattern_shape)
        scale = np.abs(img).max() or 1.0
        img = img / scale
        if img.ndim == 4:
            img = filmstrip(img, gap=1)
        if img.shape[0] == 1:
            return _diverging(img[0])
        return ((np.moveaxis(img, 0, -1) + 1) / 2 * 255).round().astype(np.uint8)

    def png(self, pixels: np.ndarray, size: int | None = None) -> bytes:
        """Display pixels -> PNG bytes, upscaled to about ``size`` (default ``self.size``)
        with nearest neighbours, so small images stay crisp."""
        im = PILImage.fromarray(pixels)
        scale = max(1, round((size or self.size) / max(im.size)))
        if scale > 1:
            im = im.resize((im.width * scale, im.height * scale), PILImage.NEAREST)
        buf = io.BytesIO()
        im.save(buf, format="PNG", compress_level=1)
        return buf.getvalue()

    def sample_png(self, key, x: np.ndarray) -> bytes:
        """PNG of one input, cached under ``key`` (for example the sample index)."""
        data = self._cache.get(key)
        if data is None:
            data = self.png(self.to_uint8(x))
            self._cache[key] = data
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return data

    def needs(self, key) -> bool:
        """Whether drawing ``key`` needs the input's values (its PNG is not cached)."""
        return not self.is_image or key not in self._cache

    def clear_cache(self):
        """Forget cached encodings (call when the inputs behind the keys change)."""
        self._cache.clear()
