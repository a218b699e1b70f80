"""Fixtures of the data tests: real DICOM series rearranged the way users' folders come."""

import shutil
from pathlib import Path

import pytest


@pytest.fixture()
def two_series(prostatex: Path, tmp_path: Path) -> Path:
    """The real T2 and ADC series of ProstateX-0000 copied into one folder."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for kind in ("t2w", "adc"):
        for file in (prostatex / "ProstateX-0000" / kind).iterdir():
            shutil.copy(file, folder / f"{kind}-{file.name}")
    return folder
