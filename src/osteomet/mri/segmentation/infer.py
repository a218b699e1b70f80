"""UNETR inference: sliding window on the segmentation grid, back to the original T2 grid.

Masks are written as NIfTI on each patient's original T2 geometry into ``SEGDIR/auto/``
(the review loop's input), optionally reduced to the largest lesion (:func:`osteomet.data.lesions.largest_component`).
Where the manifest has a reference mask, per-case Dice, precision and recall are computed
on the T2 grid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import SimpleITK as sitk
import torch

from osteomet.data.images import write_image
from osteomet.data.label_masks import read_mask
from osteomet.data.lesions import largest_component
from osteomet.data.manifest import Manifest
from osteomet.evaluation.segmentation import overlap, summarise_overlap
from osteomet.layout import METRICS
from osteomet.mri.preprocess import to_t2_geometry
from osteomet.mri.segmentation.config import SegmentationConfig
from osteomet.mri.segmentation.data import full_volume
from osteomet.mri.segmentation.model import build_unetr
from osteomet.mri.segmentation.train import sliding_window_probabilities
from osteomet.training.checkpoint import best_checkpoint, load_weights
from osteomet.utils.files import write_text_atomic
from osteomet.utils.torch import pick_device


def load_model(run_dir: str | Path, config: SegmentationConfig, device: torch.device) -> torch.nn.Module:
    model = build_unetr(config).to(device)
    load_weights(model, best_checkpoint(run_dir), device)
    return model.eval()


def predict_cohort(preprocessed: str | Path, run_dir: str | Path, segdir: str | Path, config: SegmentationConfig,
                   manifest: Manifest, *, device: str | None = None, postprocess: bool | None = None,
                   progress: Callable[[], None] | None = None) -> pd.DataFrame:
    """Predict every preprocessed patient of ``manifest``; return the per-case metrics table."""
    dev = pick_device(device)
    model = load_model(run_dir, config, dev)
    keep_largest = config.keep_largest_component if postprocess is None else postprocess
    out = Path(segdir) / "auto"
    rows = []
    for record in manifest:
        image, _, transform = full_volume(preprocessed, record.patient_id)
        probability = sliding_window_probabilities(model, image, config, dev).numpy()
        mask = to_t2_geometry(probability, transform, probabilities=True)
        array = sitk.GetArrayFromImage(mask)
        if keep_largest and array.any():
            cleaned = sitk.GetImageFromArray(largest_component(array))
            cleaned.CopyInformation(mask)
            mask, array = cleaned, sitk.GetArrayViewFromImage(cleaned)
        path = write_image(mask, out / f"{record.patient_id}.nii.gz")
        row = {"patient_id": record.patient_id, "split": record.split, "mask": str(path),
               "predicted_voxels": int(np.asarray(array).sum())}
        if record.mask is not None:
            reference = sitk.GetArrayFromImage(read_mask(record.mask, reference=mask, allow_empty=True))
            row.update(overlap(array, reference))
        rows.append(row)
        if progress:
            progress()
    table = pd.DataFrame(rows)
    write_text_atomic(Path(segdir) / METRICS, table.to_csv(index=False))
    return table


def summarise(table: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Mean Dice/precision/recall per split with percentile bootstrap 95% CIs over cases
    (:func:`osteomet.evaluation.segmentation.summarise_overlap`; metrics defined for no case left out)."""
    splits = table.assign(split=table["split"].fillna("all")).sort_values("split", kind="stable")
    summary = summarise_overlap(splits, "split", n_resamples=n_boot, seed=seed)
    if summary.empty:
        return summary
    return summary.loc[summary["n"] > 0, ["split", "metric", "n", "mean", "ci_low", "ci_high"]].reset_index(drop=True)
