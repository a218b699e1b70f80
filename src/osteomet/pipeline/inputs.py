"""What a manifest-driven stage depends on: the manifest file and every image and mask it names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from osteomet.data.manifest import Manifest

#: Manifest columns that hold paths, by kind.
PATH_COLUMNS = {"mri": ("t2", "dwi", "adc", "mask"), "ct": ("ct", "lesion_mask", "bone_map"), "clinical": ()}


def manifest_inputs(manifest: Manifest, manifest_path: str | Path | None = None) -> dict[str, Any]:
    """Stage inputs of a cohort: the manifest and its files (a change to any reruns the stage)."""
    files = []
    for record in manifest:
        for column in PATH_COLUMNS[manifest.kind]:
            value = getattr(record, column, None)
            if value is not None:
                files.append(Path(value))
    return {"manifest": manifest_path or manifest.path, "files": files}
