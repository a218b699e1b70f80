"""The image problems every reader raises: each message names the file and says what is wrong.

More specific ones live beside the code that raises them: :class:`~osteomet.data.geometry.GeometryMismatchError`,
:class:`~osteomet.data.label_masks.MaskError`.
"""

from __future__ import annotations

from osteomet.errors import InputError


class ImageError(InputError):
    """Base class for image problems; the message always names the file."""


class ImageReadError(ImageError):
    """A file or folder could not be read as an image."""
