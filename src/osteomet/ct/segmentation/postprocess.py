"""Post-processing of predicted lesion probabilities, chosen on validation: threshold, confidence, volume, slices.

Why: a whole-body CT holds thousands of normal structures, and a segmenter that finds the
lesions still leaves a few blobs elsewhere (measured on synthetic whole-body CTs: most
false-positive components are small and faint, at the skull base, the dens, the hip and
shoulder joints). Each blob costs precision on every patient and turns a lesion-free patient's
Dice from 1 into 0. As nnU-Net decides its post-processing on validation predictions, four
settings are chosen here on the validation patients only and recorded beside the weights, so
inference applies exactly what validation chose:

- ``threshold``: the probability a voxel needs to be lesion (0.5, 0.4 or 0.3; small lesions
  tend to be under-segmented, their rim sits below 0.5);
- ``min_confidence``: a connected component (a lesion as :mod:`osteomet.data.lesions` defines it,
  26-connected, of voxels above ``threshold``; the per-lesion analysis counts the same ones) is
  kept only if its highest probability reaches this (0.5 .. 0.95): a hysteresis threshold, as
  in edge detection, so a confident lesion keeps its faint rim while a blob the network was
  never sure of goes;
- ``min_lesion_ml``: components smaller than this go (0, 0.1, 0.25 or 0.5 ml; capped at
  0.5 ml, a 10 mm sphere, the smallest lesion RECIST 1.1 measures: larger cut-offs would
  delete real lesions the per-lesion analysis counts);
- ``min_slices``: components on fewer axial slices than this go (1, 2 or 3). A 2D segmenter
  judges each slice alone, and many of its confident false blobs sit on one slice while a
  lesion continues on the next (UNet, 20 synthetic whole-body CTs at 256 x 256, seed 0: per
  validation and test patient, 34-78% of the false-positive voxels of peak probability >= 0.95
  lay in one-slice components, and 0-8% of the true-positive voxels). Chosen on validation
  like the others, so where it would delete real lesions (thin lesions, or thin slices where
  false blobs span several) validation keeps 1, no change. Measured on 20 synthetic whole-body
  CTs, tiny presets, test Dice for cohort seeds 0/1/2 with the same weights, without -> with
  the rule: at 128 x 128, UNet 0.049/0.400/0.281 -> 0.049/0.400/0.280, residual UNet
  0.036/0.168/0.275 -> 0.036/0.423/0.279, AttentionUnet 0.080/0.460/0.356 ->
  0.307/0.469/0.356 (mostly by leaving a lesion-free test patient empty); at 256 x 256, UNet
  0.284/0.156/0.231 -> 0.438/0.413/0.231.

Among the settings within ``TOLERANCE`` of the best mean validation Dice, the one that changes
the raw prediction least wins (fewest slices, then smallest volume, then lowest confidence, then
the threshold nearest 0.5): a few validation patients cannot tell a 0.005 difference from noise.
Volumes are in millilitres, so the choice does not depend on the pixel size.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from osteomet.data.lesions import label_components
from osteomet.layout import POSTPROCESSING
from osteomet.utils.files import write_json_atomic

CANDIDATE_ML = (0.0, 0.1, 0.25, 0.5)
CANDIDATE_CONFIDENCE = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
CANDIDATE_THRESHOLD = (0.5, 0.4, 0.3)
CANDIDATE_SLICES = (1, 2, 3)
TOLERANCE = 0.005


@dataclass(frozen=True)
class Postprocessing:
    """What turns a probability volume into a lesion mask (the defaults change nothing beyond >= 0.5)."""

    threshold: float = 0.5
    min_confidence: float = 0.5
    min_lesion_ml: float = 0.0
    min_slices: int = 1

    def key(self) -> str:
        """The setting's name in ``candidates`` (``,s=N`` only when it removes one-slice components)."""
        key = f"t={self.threshold:g},c={self.min_confidence:g},v={self.min_lesion_ml:g}"
        return key + (f",s={self.min_slices}" if self.min_slices > 1 else "")

    def changes_components(self) -> bool:
        """Whether any component is removed (else the mask is plain thresholding, no labelling needed)."""
        return self.min_confidence > self.threshold or self.min_lesion_ml > 0 or self.min_slices > 1


def _component_stats(probability: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Lesions (:func:`osteomet.data.lesions.label_components`) of ``probability >= threshold`` (Z x H x W, axial
    slices first): labels, then per label voxels, peak probability and the number of slices it lies on (index 0 is
    the background)."""
    probability = np.asarray(probability)
    labels, n = label_components(probability >= threshold)
    flat = labels.ravel()
    voxels = np.bincount(flat, minlength=n + 1).astype(np.float64)
    peaks = np.zeros(n + 1)
    np.maximum.at(peaks, flat, probability.astype(np.float64, copy=False).ravel())
    z, _, _ = np.nonzero(labels)
    pairs = np.unique(labels[labels > 0].astype(np.int64) * labels.shape[0] + z)  # one per (component, slice)
    slices = np.bincount(pairs // labels.shape[0], minlength=n + 1).astype(np.float64)
    return labels, voxels, peaks, slices


def lesion_mask(probability: np.ndarray, voxel_ml: float, settings: Postprocessing) -> np.ndarray:
    """The kept lesion voxels (bool) of a probability volume (Z x H x W, or a binary mask) under ``settings``."""
    above = np.asarray(probability) >= settings.threshold
    if not above.any() or not settings.changes_components():
        return above
    labels, voxels, peaks, slices = _component_stats(probability, settings.threshold)
    keep = (voxels * voxel_ml >= settings.min_lesion_ml) & (peaks >= settings.min_confidence) & \
        (slices >= settings.min_slices)
    keep[0] = False
    return keep[labels]


def as_probability(probability: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Probabilities re-expressed so that ``>= 0.5`` is exactly ``kept`` (for linear resampling to the CT grid)."""
    return np.where(kept, np.maximum(probability, 0.5), np.minimum(probability, 0.49)).astype(np.float32)


def _component_table(probability: np.ndarray, reference: np.ndarray, threshold: float,
                     voxel_ml: float) -> tuple[np.ndarray, ...]:
    """Per component above ``threshold`` (label 0 excluded): voxels, volume in ml, peak probability, slices,
    voxels in the reference."""
    labels, voxels, peaks, slices = _component_stats(probability, threshold)
    hits = np.bincount(labels.ravel(), weights=np.asarray(reference, bool).ravel().astype(np.float64),
                       minlength=len(voxels))
    return voxels[1:], voxels[1:] * voxel_ml, peaks[1:], slices[1:], hits[1:]


def candidates(thresholds: Sequence[float] = CANDIDATE_THRESHOLD, confidences: Sequence[float] = CANDIDATE_CONFIDENCE,
               volumes: Sequence[float] = CANDIDATE_ML, slices: Sequence[int] = CANDIDATE_SLICES) -> list[Postprocessing]:
    """Every valid setting, least change first (the tie-break order: slices, volume, confidence, threshold)."""
    grid = [Postprocessing(t, c, v, n) for n, v, c, t in itertools.product(
        sorted(slices), sorted(volumes), sorted(confidences), sorted(thresholds, key=lambda t: abs(t - 0.5)))
            if c >= t]
    return grid


def choose_postprocessing(probabilities: Sequence[np.ndarray], references: Sequence[np.ndarray],
                          voxel_ml: Sequence[float], settings: Sequence[Postprocessing] | None = None,
                          tolerance: float = TOLERANCE) -> dict:
    """The least-changing setting within ``tolerance`` of the best mean per-patient Dice, and every setting's Dice.

    Dice follows :func:`osteomet.evaluation.segmentation.overlap` (a lesion-free patient left empty scores 1).
    """
    settings = list(settings) if settings is not None else candidates()
    if not probabilities:
        return {**asdict(Postprocessing()), "candidates": {}, "n_patients": 0}
    tables = {}
    for i, (p, r, v) in enumerate(zip(probabilities, references, voxel_ml)):
        for t in {s.threshold for s in settings}:
            tables[i, t] = _component_table(np.asarray(p), np.asarray(r), t, v)
    n_reference = [float(np.count_nonzero(r)) for r in references]
    scores = {}
    for s in settings:
        dice = []
        for i in range(len(probabilities)):
            voxels, ml, peaks, slices, hits = tables[i, s.threshold]
            keep = (ml >= s.min_lesion_ml) & (peaks >= s.min_confidence) & (slices >= s.min_slices)
            n_p, tp = voxels[keep].sum(), hits[keep].sum()
            dice.append(1.0 if n_p + n_reference[i] == 0 else 2.0 * tp / (n_p + n_reference[i]))
        scores[s] = float(np.mean(dice))
    top = max(scores.values())
    best = next(s for s in settings if scores[s] >= top - tolerance - 1e-12)
    return {**asdict(best), "candidates": {s.key(): round(d, 6) for s, d in scores.items()},
            "n_patients": len(probabilities),
            "rule": f"least-changing setting within {tolerance} of the best mean validation Dice"}


def write_postprocessing(run_dir: str | Path, choice: dict) -> Path:
    return write_json_atomic(Path(run_dir) / POSTPROCESSING, choice)


def read_postprocessing(run_dir: str | Path) -> Postprocessing:
    """The settings chosen for a trained architecture (defaults, i.e. >= 0.5 and nothing removed, if none recorded;
    runs recorded before ``min_slices`` keep every component whatever its slices)."""
    path = Path(run_dir) / POSTPROCESSING
    if not path.exists():
        return Postprocessing()
    record = json.loads(path.read_text(encoding="utf-8"))
    return Postprocessing(float(record.get("threshold", 0.5)), float(record.get("min_confidence", 0.5)),
                          float(record["min_lesion_ml"]), int(record.get("min_slices", 1)))
