"""Post-processing of predicted lesion masks: drop connected components below a volume chosen on validation.

Why: a whole-body CT holds thousands of normal structures, and a segmenter that finds the
lesions still leaves a few small blobs elsewhere (measured on synthetic whole-body CTs: most
false-positive components are under 0.5 ml, at the skull base, the dens, the hip and
shoulder joints). Each blob costs precision on every patient and turns a lesion-free patient's
Dice from 1 into 0. As nnU-Net decides its post-processing on validation predictions, the
smallest kept volume is chosen here on the validation patients only, from a fixed list that
starts at 0 (no removal) and stops at 0.5 ml (a 10 mm sphere, the smallest lesion RECIST 1.1
measures: larger cut-offs would delete real lesions the per-lesion analysis counts), and
recorded beside the weights, so inference applies exactly what validation chose. The
smallest volume within ``TOLERANCE`` of the best validation Dice wins: a few validation
patients cannot tell a 0.005 difference from noise, and removing less keeps small lesions.
Volumes are in millilitres, so the choice does not depend on the pixel size.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from osteomet.utils.files import write_json_atomic

POSTPROCESSING = "postprocessing.json"
CANDIDATE_ML = (0.0, 0.1, 0.25, 0.5)
TOLERANCE = 0.005


def remove_small_components(mask: np.ndarray, voxel_ml: float, min_ml: float) -> np.ndarray:
    """``mask`` (Z x H x W, bool) without the 26-connected components smaller than ``min_ml`` millilitres."""
    import cc3d

    mask = np.asarray(mask, bool)
    if min_ml <= 0 or not mask.any():
        return mask
    labels = cc3d.connected_components(mask.astype(np.uint8), connectivity=26)
    sizes = np.bincount(labels.ravel()) * voxel_ml
    keep = sizes >= min_ml
    keep[0] = False
    return keep[labels]


def choose_min_volume(predictions: Sequence[np.ndarray], references: Sequence[np.ndarray],
                      voxel_ml: Sequence[float], candidates: Sequence[float] = CANDIDATE_ML,
                      tolerance: float = TOLERANCE) -> dict:
    """The smallest candidate within ``tolerance`` of the best mean per-patient Dice, and every candidate's Dice."""
    from osteomet.evaluation.segmentation import overlap

    if not predictions:
        return {"min_lesion_ml": 0.0, "candidates": {}, "n_patients": 0}
    scores = {}
    for candidate in sorted(candidates):
        dice = [overlap(remove_small_components(p, v, candidate), r)["dice"]
                for p, r, v in zip(predictions, references, voxel_ml)]
        scores[float(candidate)] = float(np.nanmean(dice))
    top = max(scores.values())
    best = min(c for c, s in scores.items() if s >= top - tolerance - 1e-12)
    return {"min_lesion_ml": best, "candidates": {str(c): round(s, 6) for c, s in scores.items()},
            "n_patients": len(predictions),
            "rule": f"smallest volume within {tolerance} of the best mean validation Dice"}


def write_postprocessing(run_dir: str | Path, choice: dict) -> Path:
    return write_json_atomic(Path(run_dir) / POSTPROCESSING, choice)


def read_min_volume(run_dir: str | Path) -> float:
    """The chosen smallest lesion volume of a trained architecture (0: none recorded, nothing removed)."""
    path = Path(run_dir) / POSTPROCESSING
    return float(json.loads(path.read_text())["min_lesion_ml"]) if path.exists() else 0.0
