"""What the export and the import of the review loop share: folder names, the sheet, errors."""

from __future__ import annotations

import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import SimpleITK as sitk

from osteomet.data.manifest import ManifestError

PathLike = str | os.PathLike[str]
Log = Callable[[str], None]

_logger = logging.getLogger("osteomet.mri.review")

REVIEW_DIR = "review"
README_NAME = "README.txt"
SHEET_COLUMNS = ["patient_id", "t2", "auto_mask", "auto_voxels", "auto_volume_ml", "reviewed", "reviewer", "comment"]
#: Suffixes accepted for ``<patient>_reviewed.*``, most specific first.
REVIEWED_SUFFIXES = (".seg.nrrd", ".nii.gz", ".nrrd", ".nii")
IMAGE_FILES = {"t2": "t2.nrrd", "highb": "highb.nrrd", "adc": "adc.nrrd"}




class ReviewError(ManifestError):
    """Some patients of an export or import failed (the others were done); ``table`` has per-patient results."""

    def __init__(self, path: PathLike | None, problems: Sequence[str], table: pd.DataFrame | None = None):
        super().__init__(path, problems)
        self.table = table


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _with_patient(patient_id: str, exc: BaseException) -> str:
    text = str(exc)
    return text if text.startswith(f"patient {patient_id!r}") else f"patient {patient_id!r}: {text}"


def _default_log(message: str) -> None:
    _logger.warning(message)



def reviewed_candidates(folder: PathLike, patient_id: str) -> list[Path]:
    """``<patient>_reviewed.*`` files in ``folder/<patient>/`` or directly in ``folder``."""
    folder = Path(folder)
    found = []
    for base in (folder / patient_id, folder):
        for suffix in REVIEWED_SUFFIXES:
            candidate = base / f"{patient_id}_reviewed{suffix}"
            if candidate.is_file() and candidate not in found:
                found.append(candidate)
    return found


def _voxel_volume_ml(image: sitk.Image) -> float:
    return float(np.prod(image.GetSpacing())) / 1000.0
