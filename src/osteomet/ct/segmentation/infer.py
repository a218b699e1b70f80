"""Segmentation inference: sliding windows over each slice's bone crop, stacked to 3D, NIfTI on the CT's own grid.

Every slice (with its neighbours as channels) is predicted by sliding windows of the training
patch size over the patient's bone crop (MONAI ``sliding_window_inference``, Gaussian-weighted
overlap), so the network sees at inference exactly the pixel size and context it was trained
on; the probability is kept within ``bone_only_mm`` of bone (lesions are bone lesions), and
the threshold, component confidence and smallest volume chosen on validation at training are
applied (:mod:`osteomet.ct.segmentation.postprocess`). The probability stack is put back into the whole slice grid (0 outside the crop), resampled in
physical space (linear, then >= 0.5) onto the original CT geometry, whatever its orientation or
matrix (a DICOM series included), and written atomically to
``OUT/<architecture>/masks/<patient_id>.nii.gz``.
Where the manifest has a lesion mask, per-patient Dice, precision and recall are computed
on the CT grid (:func:`osteomet.evaluation.segmentation.overlap`; a lesion-free patient
left empty scores 1) into ``OUT/<architecture>/metrics.csv``, one row per patient with
columns patient_id, split, model, dice, precision, recall: the long format that
:mod:`osteomet.ct.segmentation.compare` (and the nnU-Net import) share.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import SimpleITK as sitk

from osteomet.ct.segmentation.config import CTSegmentationConfig
from osteomet.ct.segmentation.postprocess import as_probability, lesion_mask, read_postprocessing
from osteomet.ct.segmentation.train import lesion_region, load_segmenter, volume_probabilities
from osteomet.ct.slices import run as slice_run
from osteomet.ct.slices.cache import load_case, to_ct_geometry, voxel_ml
from osteomet.data.images import write_image
from osteomet.data.label_masks import read_mask
from osteomet.data.manifest import Manifest
from osteomet.layout import METRICS
from osteomet.utils.files import write_text_atomic
from osteomet.utils.torch import pick_device


def run_config(run_dir: str | Path) -> CTSegmentationConfig:
    """The settings the segmentation run was trained with."""
    return slice_run.read_run_config(run_dir, CTSegmentationConfig)


def trained_architectures(run_dir: str | Path) -> list[str]:
    """The run's networks that finished training."""
    return slice_run.trained_architectures(run_dir, CTSegmentationConfig, "segmenter")


def predict_segmentation(manifest: Manifest, run_dir: str | Path, out: str | Path, *, cache: str | Path | None = None,
                         architectures: list[str] | None = None, device: str | None = None,
                         on_cached: Callable[[], None] | None = None,
                         progress: Callable[[], None] | None = None) -> pd.DataFrame:
    """Masks for every patient and architecture; returns the long per-patient metrics table.

    ``on_cached`` is called per patient cached, ``progress`` per patient segmented (all architectures).
    """
    from osteomet.evaluation.segmentation import overlap

    run_dir, out = Path(run_dir), Path(out)
    config = run_config(run_dir)
    architectures = architectures or trained_architectures(run_dir)
    root, _, patients = slice_run.cache_for_prediction(manifest, run_dir, out, config.slices, cache=cache,
                                                       on_cached=on_cached)
    split_of = dict(zip(patients["patient_id"], patients["split"]))
    dev = pick_device(device)
    models = {a: load_segmenter(run_dir, a, config, dev) for a in architectures}
    settings = {a: read_postprocessing(run_dir / a) for a in architectures}
    rows = []
    for record in manifest:
        arrays, meta = load_case(root, record.patient_id)
        spacing = meta["slice_geometry"]["spacing"]
        region = lesion_region(arrays["bone"], (float(spacing[0]), float(spacing[1])), config)
        reference = None
        for architecture, model in models.items():
            probability = volume_probabilities(model, arrays["image"], config, dev, region=region)
            # threshold, component confidence and volume chosen on the validation patients at training
            kept = lesion_mask(probability, voxel_ml(meta), settings[architecture])
            probability = as_probability(probability, kept)
            mask = to_ct_geometry(probability, meta)
            path = write_image(mask, out / architecture / "masks" / f"{record.patient_id}.nii.gz")
            array = sitk.GetArrayViewFromImage(mask)
            row = {"patient_id": record.patient_id, "split": split_of[record.patient_id], "model": architecture,
                   "mask": str(path), "predicted_voxels": int(np.count_nonzero(array))}
            if record.lesion_mask is not None:
                if reference is None:
                    reference = sitk.GetArrayFromImage(read_mask(record.lesion_mask, reference=mask,
                                                                 reference_name=record.ct, allow_empty=True))
                row.update(overlap(array, reference))
            rows.append(row)
        if progress:
            progress()
    table = pd.DataFrame(rows)
    for architecture, part in table.groupby("model", sort=False):
        write_text_atomic(out / architecture / METRICS, part.to_csv(index=False))
    write_text_atomic(out / METRICS, table.to_csv(index=False))
    return table
