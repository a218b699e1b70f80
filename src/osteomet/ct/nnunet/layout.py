"""Where an nnU-Net working directory keeps its three trees, and the export record inside it.

nnU-Net finds its data through three environment variables (``nnUNet_raw``,
``nnUNet_preprocessed``, ``nnUNet_results``). Keeping all three inside one osteomet run
directory makes a run self-contained: nothing is read from or written to a global nnU-Net
folder the user may have for other projects. A study run (``osteomet run ct``) keeps each
tree in the stage folder of the step that writes it (export, plan, train), so a layout may
name a tree that lies elsewhere than under its root.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from osteomet.errors import InputError

#: nnU-Net's dataset description in every raw dataset folder.
DATASET_JSON = "dataset.json"
#: Name of the record the export writes beside dataset.json (case ids, patient ids, splits, sources).
EXPORT_RECORD = "osteomet_export.json"
#: nnU-Net's file ending for every image and label of the dataset.
FILE_ENDING = ".nii.gz"
#: The single input channel; the name "CT" makes nnU-Net use its CT normalisation (HU percentiles).
CHANNEL_SUFFIX = "_0000"

_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")


class NnunetLayoutError(InputError):
    """An nnU-Net working directory or dataset is missing, incomplete or inconsistent."""


def dataset_folder_name(dataset_id: int, name: str) -> str:
    """nnU-Net's ``DatasetXXX_Name`` (three-digit id, 1-999; the name without spaces or slashes)."""
    if not 1 <= int(dataset_id) <= 999:
        raise InputError(f"nnU-Net dataset id must be between 1 and 999, got {dataset_id}")
    if not _NAME_RE.match(name):
        raise InputError(f"nnU-Net dataset name {name!r} may only contain letters, digits, '_' and '-'")
    return f"Dataset{int(dataset_id):03d}_{name}"


@dataclass(frozen=True)
class NnunetLayout:
    """The three nnU-Net trees under one root, and one dataset's folders in them.

    ``raw_at``, ``preprocessed_at``, ``results_at``: a tree that lies elsewhere (an earlier stage's
    folder); logs are always written under ``root``.
    """

    root: Path
    dataset_id: int
    dataset_name: str
    raw_at: Path | None = None
    preprocessed_at: Path | None = None
    results_at: Path | None = None

    @property
    def folder_name(self) -> str:
        return dataset_folder_name(self.dataset_id, self.dataset_name)

    @property
    def raw_root(self) -> Path:
        return Path(self.raw_at) if self.raw_at is not None else self.root / "nnUNet_raw"

    @property
    def preprocessed_root(self) -> Path:
        return Path(self.preprocessed_at) if self.preprocessed_at is not None else self.root / "nnUNet_preprocessed"

    @property
    def results_root(self) -> Path:
        return Path(self.results_at) if self.results_at is not None else self.root / "nnUNet_results"

    @property
    def raw(self) -> Path:
        return self.raw_root / self.folder_name

    @property
    def preprocessed(self) -> Path:
        return self.preprocessed_root / self.folder_name

    @property
    def results(self) -> Path:
        return self.results_root / self.folder_name

    @property
    def splits_file(self) -> Path:
        return self.preprocessed / "splits_final.json"

    @property
    def record_file(self) -> Path:
        return self.raw / EXPORT_RECORD

    def env(self) -> dict[str, str]:
        """The environment variables nnU-Net reads its folders from."""
        return {
            "nnUNet_raw": str(self.raw_root.resolve()),
            "nnUNet_preprocessed": str(self.preprocessed_root.resolve()),
            "nnUNet_results": str(self.results_root.resolve()),
        }

    def read_record(self) -> dict[str, Any]:
        """The export record; raises a clear error when this is not an exported dataset."""
        try:
            return json.loads(self.record_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NnunetLayoutError(
                f"{self.record_file}: not found; {self.root} has no dataset {self.folder_name} exported by "
                f"`osteomet ct nnunet export`"
            ) from None
        except json.JSONDecodeError as exc:
            raise NnunetLayoutError(f"{self.record_file}: not valid JSON ({exc})") from exc

    def read_splits(self) -> list[dict[str, list[str]]]:
        try:
            return json.loads(self.splits_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NnunetLayoutError(f"{self.splits_file}: not found; run `osteomet ct nnunet export` first") from None

    @classmethod
    def find(cls, root: str | Path, dataset_id: int | None = None) -> "NnunetLayout":
        """Open the exported dataset under ``root`` (the only one, or the one with ``dataset_id``)."""
        root = Path(root)
        raw_root = root / "nnUNet_raw"
        found = sorted(p for p in raw_root.glob("Dataset[0-9][0-9][0-9]_*") if (p / EXPORT_RECORD).is_file()) \
            if raw_root.is_dir() else []
        if dataset_id is not None:
            found = [p for p in found if int(p.name[7:10]) == int(dataset_id)]
        if not found:
            which = f"dataset {dataset_id}" if dataset_id is not None else "a dataset"
            raise NnunetLayoutError(f"{root}: no {which} exported by `osteomet ct nnunet export` "
                                    f"(looked for {raw_root}/DatasetXXX_Name/{EXPORT_RECORD})")
        if len(found) > 1:
            raise NnunetLayoutError(f"{root}: several exported datasets ({', '.join(p.name for p in found)}); "
                                    f"pass the dataset id")
        folder = found[0].name
        return cls(root, int(folder[7:10]), folder[11:])
