"""The exceptions that mean "your input is wrong" (reported to users without a traceback)."""

from __future__ import annotations

from osteomet.data.io import ImageError
from osteomet.data.manifest import ManifestError

USER_ERRORS: tuple[type[BaseException], ...] = (ImageError, ManifestError, FileExistsError, FileNotFoundError, ValueError)
