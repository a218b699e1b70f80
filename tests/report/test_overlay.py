"""Segmentation overlays: a mask in T2 geometry lands on the preprocessed T2 where preprocessing put it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from osteomet.data.manifest import read_manifest


def test_the_reference_mask_lands_where_preprocessing_put_it(study_run: Path, tmp_path: Path) -> None:
    from osteomet.mri.segmentation.overlay import overlay_arrays, write_overlays

    records = list(read_manifest(study_run / "cohorts" / "mri" / "manifest.csv"))
    arrays = [overlay_arrays(study_run / "preprocess", r.patient_id, r.mask) for r in records[:8]]
    t2, mask, used = max(arrays, key=lambda a: int(a[2].sum()) if a[2] is not None else -1)  # the largest tumour
    assert used is not None and used.sum() > 10
    np.testing.assert_array_equal(mask, used)  # same mask, same grid, same resampling: the same voxels
    assert t2.shape == mask.shape and t2[mask].mean() != t2.mean()  # the tumour differs from the whole slice stack
    written = write_overlays(study_run / "preprocess", study_run / "segmentation" / "masks",
                             [p.name[:-len(".nii.gz")] for p in sorted((study_run / "segmentation" / "masks" / "auto")
                                                                        .glob("*.nii.gz"))][:1], tmp_path)
    assert len(written) == 1 and written[0].read_bytes().startswith(b"\x89PNG")
