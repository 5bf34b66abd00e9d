"""Input renderer: how the views draw raw samples and input-space patterns.

:class:`InputRenderer` is :class:`peekwidgets.images.InputImages` (the pixels, shared with the
report); the gallery's tiles (:class:`~peekwidgets.widgets.tiles.TileGrid`) draw its display
pixels in the browser.
"""

from __future__ import annotations

from peekwidgets.images import InputImages

__all__ = ["InputRenderer"]


class InputRenderer(InputImages):
    """:class:`~peekwidgets.images.InputImages` for the views.

    Takes the parameters of :class:`~peekwidgets.images.InputImages`.
    """

    @classmethod
    def from_images(cls, images: InputImages, **kwargs) -> InputRenderer:
        """A renderer that draws like ``images`` (same shape, normalization and range);
        ``kwargs`` (``size``, ``cache_size``) override."""
        return cls(images.sample_shape, **{**images.params(), **kwargs})
