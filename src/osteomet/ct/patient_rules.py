"""Deciding a CT patient positive: patient-level rules for the slice detectors and the lesion segmenters.

Why: a detector calls a slice positive at the threshold Youden chose on validation *slices*, and
the patient was positive when any slice was: with a few hundred slices a patient, one noisy
slice (a joint cortex cut tangentially) flags almost every lesion-free patient (benchmark:
28 of 30 runs flagged the lesion-free test patient at a slice threshold of 0.038). A segmenter's
patient was positive when any component survived post-processing, which is chosen for Dice, not
for the patient call (17 of 30 runs left a confident false blob of up to 2 ml). Here the patient
call gets its own operating point, chosen on the validation patients only, as the slice threshold
and the post-processing are.

Detector rule
-------------
A patient score from its slice probabilities, then ``score >= threshold``. The family (small on
purpose: few validation patients cannot choose among many rules):

- ``top_k``: the k-th highest slice probability, i.e. "at least k slices at or above the
  threshold" (k = 1 is the old rule: the maximum);
- ``run``: the longest stretch of k consecutive slices all at or above the threshold (the
  highest k-slice window minimum). A lesion spans several slices; a noise blip rarely does.

with k in 1, 2, 3, 5. For each (kind, k) the threshold follows from the data: the highest
threshold that keeps patient sensitivity >= ``sensitivity_target`` (the weakest lesion patient's
score that must stay positive), lowered to halfway towards the highest negative score below it,
so the rule is as far from the nearest lesion-free score as from the weakest lesion score it
must keep (any threshold in between gives the same validation numbers; the middle is the one
least tuned to these few patients). The candidate with the highest specificity wins; ties go to
the simplest rule (smaller k, then ``top_k`` before ``run``), so a k > 1 is only chosen where
validation showed the maximum to be fooled.

Why the specificity is defensible with 1-3 validation patients: a lesion-free patient is only
a run of lesion-free slices, and so is most of a lesion patient's scan. Every validation patient
therefore counts as a *negative scan*: a lesion-free patient with all its slices, a lesion
patient with the slices more than ``margin_slices`` (plus the detector's slice smoothing) away
from any lesion slice, the lesion stretch cut out (runs do not bridge the cut), when at least
``min_negative_slices`` remain. Specificity is measured over these negative scans; a run of
2 lesion patients and 1 lesion-free patient so has 3 negative scans, not 1. The lesion-free
patients' own specificity is recorded beside it. A lesion patient's remaining scan is a little
shorter than a whole one, so that estimate is slightly optimistic; the test-split metrics, on
real lesion-free patients only, are what a study reports.

Fallback: without a validation patient with a lesion, or without any negative scan, nothing can
be chosen; the rule is then the old one (maximum slice probability at the detector's validation
slice threshold; 0.5 when none is recorded) and ``chosen_on_data`` is false with the reason.

Segmenter rule
--------------
The masks a segmenter writes are binary (:func:`osteomet.ct.slices.cache.to_ct_geometry`
thresholds the resampled probabilities at 0.5, after the component confidence, smallest volume
and slice-count filters :mod:`osteomet.ct.segmentation.postprocess` chose for Dice), so the
segmenter's own confidence was already spent on Dice. Two things are left to judge a predicted
lesion (a 26-connected component, :func:`osteomet.ct.lesions.labels.label_lesions`) by:

- its volume: it counts only if it reaches ``min_lesion_ml`` (0, 0.1, 0.25, 0.5, 1 or 2 ml);
- a second opinion: it counts only if a slice detector of the same study gives one of the slices
  it lies on a probability >= ``min_detector_probability`` (0.25, 0.5, 0.75 or 0.9). The detector
  judges whole slices with a different network, so its errors are largely not the segmenter's:
  on the ten-cohort benchmark (UNet 8 epochs, ResNet34 6 epochs, validation patients) a
  detector probability of 0.5 kept 13 of the 15 true lesions and 7 of the 140 false ones.
  Slices are those of the detector's slice cache (LPS-oriented), whatever the mask's orientation
  (:mod:`osteomet.ct.slices.orientation`).

A patient is positive when any lesion counts. Chosen on validation: the fewest false-positive
lesions per validation patient (every patient: a false blob in a lesion patient is the same kind
of blob as in a lesion-free one, which again gives more than the few lesion-free patients to
count on) subject to lesion sensitivity >= ``lesion_sensitivity_target`` (matching as
:mod:`osteomet.ct.lesions.matching`, redone for every candidate, since removing a fragment can
change the assignment); ties to the rule that changes least (no detector before one, then the
lower detector probability, then the smaller volume). Where no candidate reaches the target even
keeping everything, the rule may remove no lesion validation detected (the sensitivity floor is
the unfiltered one). Without a validation reference lesion the sensitivity cannot be checked:
nothing is removed (0 ml, no detector) and ``chosen_on_data`` is false.

Metrics (per split): patient sensitivity (lesion patients called positive) and specificity
(lesion-free patients called negative) with Wilson intervals; for segmenters also false-positive
lesions per lesion-free patient and per patient (percentile bootstrap over patients) and lesion
sensitivity (Wilson; optimistic where patients have many lesions, see
:mod:`osteomet.ct.lesions.metrics`). A segmenter's patient sensitivity is the call (any lesion
counted), not localisation; lesion sensitivity measures localisation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Literal, Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from osteomet.ct.lesions.labels import LesionLabels
from osteomet.errors import InputError
from osteomet.utils.files import json_ready

Kind = Literal["top_k", "run"]
KINDS: tuple[str, ...] = ("top_k", "run")
CANDIDATE_K = (1, 2, 3, 5)
CANDIDATE_ML = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)
CANDIDATE_DETECTOR_P = (0.25, 0.5, 0.75, 0.9)
#: Column of a lesion table holding each lesion's highest detector slice probability (the segmenter rule's detector).
DETECTOR_COLUMN = "detector_probability"
#: The detector rule's threshold when the run recorded no slice threshold and validation cannot choose.
FALLBACK_THRESHOLD = 0.5
#: Columns of a detector's slice-score table (``slice_scores.csv``) the rules read.
SLICE_COLUMNS = ("patient_id", "slice", "split", "label", "probability")
METRIC_COLUMNS = ["split", "metric", "estimate", "ci_low", "ci_high", "numerator", "denominator", "n_patients",
                  "ci_method"]
SPLIT_ORDER = ("train", "val", "test")


class PatientRuleSettings(BaseModel):
    """What the rules are chosen from and for (recorded in the stage's ``settings.yaml``)."""

    model_config = ConfigDict(extra="forbid")

    sensitivity_target: float = Field(0.9, gt=0, le=1, description="patient sensitivity a detector rule keeps")
    lesion_sensitivity_target: float = Field(0.8, gt=0, le=1, description="lesion sensitivity a segmenter rule keeps")
    ks: tuple[int, ...] = Field(CANDIDATE_K, description="slice counts k of the detector rules")
    kinds: tuple[Kind, ...] = Field(KINDS, description="top_k (k-th highest slice), run (k consecutive slices)")
    volumes_ml: tuple[float, ...] = Field(CANDIDATE_ML, description="smallest lesion volumes a segmenter rule tries")
    detector_probabilities: tuple[float, ...] = Field(CANDIDATE_DETECTOR_P, description=(
        "detector slice probabilities a segmenter rule may ask of one of a lesion's slices (empty: volume only)"))
    margin_slices: int = Field(3, ge=0, description=(
        "slices beside a lesion slice left out of a lesion patient's negative scan (partial volume); the detector's "
        "slice smoothing is added"))
    min_negative_slices: int = Field(10, ge=1, description="fewest slices a lesion patient's negative scan needs")
    criterion: Literal["iou", "any"] = Field("iou", description="lesion hit criterion (ct/lesions/matching)")
    iou_threshold: float = Field(0.1, gt=0, le=1)
    level: float = Field(0.95, gt=0, lt=1, description="confidence level of the intervals")
    n_resamples: int = Field(2000, ge=100, description="bootstrap resamples of the per-patient means")
    seed: int = 0

    @field_validator("ks")
    @classmethod
    def _ks(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or min(value) < 1:
            raise ValueError("ks must be slice counts >= 1")
        return tuple(sorted(set(value)))

    @field_validator("volumes_ml")
    @classmethod
    def _volumes(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if min(value, default=-1.0) < 0:
            raise ValueError("volumes_ml must be >= 0")
        return tuple(sorted(set(value) | {0.0}))  # 0: the unfiltered segmenter, the sensitivity floor

    @field_validator("detector_probabilities")
    @classmethod
    def _probabilities(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 < v <= 1 for v in value):
            raise ValueError("detector_probabilities must lie in (0, 1]")
        return tuple(sorted(set(value)))


# ---- rules --------------------------------------------------------------------------------------


def _short(value: float) -> str:
    """Four significant digits, more where they would round a threshold just below 1 up to 1 (saturated models)."""
    for digits in range(4, 17):
        text = f"{value:.{digits}g}"
        if float(text) != 1.0 or value == 1.0:
            return text
    return repr(value)


@dataclass(frozen=True)
class DetectorRule:
    """A patient is positive when its ``kind``/``k`` score of slice probabilities reaches ``threshold``."""

    kind: str = "top_k"
    k: int = 1
    threshold: float = FALLBACK_THRESHOLD

    def __post_init__(self) -> None:
        if self.kind not in KINDS or int(self.k) < 1:
            raise InputError(f"unknown detector patient rule kind={self.kind!r}, k={self.k} (kinds: {', '.join(KINDS)};"
                             f" k >= 1)")

    def describe(self) -> str:
        threshold = _short(self.threshold)
        if self.k == 1:
            return f"highest slice probability >= {threshold}"
        if self.kind == "top_k":
            return f"at least {self.k} slices with probability >= {threshold}"
        return f"at least {self.k} consecutive slices with probability >= {threshold}"


@dataclass(frozen=True)
class SegmenterRule:
    """A predicted lesion counts when its volume reaches ``min_lesion_ml`` and, with a ``detector``, that detector gives
    one of its slices a probability >= ``min_detector_probability``; a patient is positive with one that counts."""

    min_lesion_ml: float = 0.0
    detector: str | None = None
    min_detector_probability: float = 0.0

    def describe(self) -> str:
        text = "any predicted lesion" + (f" of at least {self.min_lesion_ml:g} ml" if self.min_lesion_ml > 0 else "")
        if self.detector is not None:
            text += f" on a slice the {self.detector} detector scores >= {self.min_detector_probability:g}"
        return text

    def counts(self, volume_ml: np.ndarray, detector_probability: np.ndarray | None) -> np.ndarray:
        """Which lesions count, from their volumes and (with a detector) their highest detector slice probabilities."""
        keep = np.asarray(volume_ml, float) >= self.min_lesion_ml
        if self.detector is not None:
            if detector_probability is None:
                raise InputError(f"the segmenter rule asks the {self.detector} detector, but its slice probabilities "
                                 f"of the lesions are missing (run that detector on the patient)")
            keep &= np.asarray(detector_probability, float) >= self.min_detector_probability
        return keep


@dataclass
class RuleChoice:
    """A rule, whether validation chose it (and on what), its validation numbers and every candidate's."""

    rule: DetectorRule | SegmenterRule
    chosen_on_data: bool
    basis: str
    validation: dict[str, Any] = field(default_factory=dict)
    candidates: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        task = "detector" if isinstance(self.rule, DetectorRule) else "segmenter"
        return {"task": task, "rule": asdict(self.rule), "description": self.rule.describe(),
                "chosen_on_data": self.chosen_on_data, "basis": self.basis, "validation": json_ready(self.validation),
                "candidates": json_ready(self.candidates)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RuleChoice":
        """Read back :meth:`to_dict` (``rules.json``); a malformed entry is an :class:`InputError`."""
        try:
            rule_type = DetectorRule if data["task"] == "detector" else SegmenterRule
            rule = rule_type(**data["rule"])
            return cls(rule, bool(data["chosen_on_data"]), str(data.get("basis", "")), dict(data.get("validation", {})),
                       list(data.get("candidates", [])))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"patient rule entry is malformed ({exc!r}): {str(data)[:200]}") from None


# ---- detector: patient scores from slice probabilities ------------------------------------------


def slice_statistic(probabilities: Sequence[float], slices: Sequence[int], kind: str, k: int) -> float:
    """A patient's (or negative scan's) score under ``kind``/``k``; 0 when it has too few slices to fire.

    Slices are consecutive when their indices differ by 1, so a gap (a cut-out lesion stretch) ends a run.
    """
    p = np.asarray(probabilities, float)
    s = np.asarray(slices, int)
    if p.size < k:
        return 0.0
    order = np.argsort(s, kind="stable")
    p, s = p[order], s[order]
    if kind == "top_k" or k == 1:
        return float(np.sort(p)[-k])
    best = 0.0
    for segment in np.split(p, np.flatnonzero(np.diff(s) != 1) + 1):
        if segment.size >= k:
            best = max(best, float(np.lib.stride_tricks.sliding_window_view(segment, k).min(axis=1).max()))
    return best


def check_slice_table(slices: pd.DataFrame, name: str = "slice scores") -> None:
    """Refuse a slice table without the columns of ``slice_scores.csv``, naming what is missing."""
    missing = [c for c in SLICE_COLUMNS if c not in slices]
    if missing:
        raise InputError(f"{name}: missing column(s) {', '.join(missing)} (expected those of slice_scores.csv: "
                         f"{', '.join(SLICE_COLUMNS)})")


def apply_detector_rule(rule: DetectorRule, slices: pd.DataFrame) -> pd.DataFrame:
    """Patient calls of a slice-score table: patient_id, split, label (any lesion slice; NaN unlabelled), n_slices,
    score (the rule's statistic) and predicted (0/1)."""
    check_slice_table(slices)
    rows = []
    for patient, part in slices.groupby("patient_id", sort=False):
        labels = part["label"]
        score = slice_statistic(part["probability"], part["slice"], rule.kind, rule.k)
        rows.append({"patient_id": patient, "split": part["split"].iloc[0],
                     "label": float(labels.max()) if labels.notna().all() else math.nan,
                     "n_slices": int(len(part)), "score": score, "predicted": int(score >= rule.threshold)})
    return pd.DataFrame(rows, columns=["patient_id", "split", "label", "n_slices", "score", "predicted"])


@dataclass
class _Scan:
    """Slices a detector rule is judged on: a lesion patient's whole scan, or a negative scan."""

    patient_id: str
    probabilities: np.ndarray
    slices: np.ndarray
    lesion_free_patient: bool = False


def validation_scans(slices: pd.DataFrame, *, margin: int, min_negative_slices: int) -> tuple[list[_Scan], list[_Scan]]:
    """The validation patients with lesions (whole scans) and the negative scans (module docstring)."""
    check_slice_table(slices)
    val = slices[slices["split"] == "val"]
    positives, negatives = [], []
    for patient, part in val.groupby("patient_id", sort=False):
        if part["label"].isna().any():
            continue  # unlabelled patients choose nothing
        p, s = part["probability"].to_numpy(float), part["slice"].to_numpy(int)
        lesion = part["label"].to_numpy(float) > 0
        if not lesion.any():
            negatives.append(_Scan(str(patient), p, s, lesion_free_patient=True))
            continue
        positives.append(_Scan(str(patient), p, s))
        lesion_slices = s[lesion]
        distance = np.abs(s[:, None] - lesion_slices[None, :]).min(axis=1)
        away = distance > margin
        if int(away.sum()) >= min_negative_slices:
            negatives.append(_Scan(str(patient), p[away], s[away]))
    return positives, negatives


def detector_candidates(settings: PatientRuleSettings) -> list[tuple[str, int]]:
    """(kind, k) in the tie-break order: smaller k first, ``top_k`` before ``run`` (both are the maximum at k = 1)."""
    order = []
    for k in settings.ks:
        for kind in KINDS:
            if kind in settings.kinds and not (k == 1 and kind == "run" and "top_k" in settings.kinds):
                order.append((kind, k))
    return order


def choose_detector_rule(slices: pd.DataFrame, *, slice_threshold: float = math.nan,
                         settings: PatientRuleSettings | None = None, smoothing: int = 0) -> RuleChoice:
    """The most specific rule with patient sensitivity >= target on the validation patients (module docstring).

    ``slice_threshold``: the detector's validation slice threshold, the fallback rule's; ``smoothing``: the
    detector's slice smoothing (neighbours averaged in), added to the margin around lesion slices.
    """
    settings = settings or PatientRuleSettings()
    fallback = DetectorRule("top_k", 1, float(slice_threshold) if math.isfinite(slice_threshold)
                            else FALLBACK_THRESHOLD)
    old = ("the old rule: highest slice probability at the detector's validation slice threshold"
           if math.isfinite(slice_threshold) else f"highest slice probability at {FALLBACK_THRESHOLD} (no slice "
                                                    f"threshold recorded)")
    positives, negatives = validation_scans(slices, margin=settings.margin_slices + smoothing,
                                            min_negative_slices=settings.min_negative_slices)
    n_free = sum(n.lesion_free_patient for n in negatives)
    counts = {"n_lesion_patients": len(positives), "n_lesion_free_patients": n_free,
              "n_negative_scans": len(negatives), "n_negative_scans_from_lesion_patients": len(negatives) - n_free}
    if not positives:
        return RuleChoice(fallback, False, f"not chosen on data: validation has no labelled patient with a lesion; "
                                           f"{old}", counts)
    if not negatives:
        return RuleChoice(fallback, False, f"not chosen on data: validation has no lesion-free patient and no lesion "
                                           f"patient with {settings.min_negative_slices} slices away from its lesions; "
                                           f"{old}", counts)
    need = max(1, math.ceil(settings.sensitivity_target * len(positives) - 1e-9))
    candidates = []
    for kind, k in detector_candidates(settings):
        pos = np.array([slice_statistic(u.probabilities, u.slices, kind, k) for u in positives])
        neg = np.array([slice_statistic(u.probabilities, u.slices, kind, k) for u in negatives])
        free = np.array([u.lesion_free_patient for u in negatives], bool)
        highest = float(np.sort(pos)[::-1][need - 1])  # the weakest lesion score that must stay positive
        if highest <= 0:
            candidates.append({"kind": kind, "k": k, "threshold": None, "feasible": False})
            continue
        below = neg[neg < highest]
        threshold = (float(below.max()) if below.size else 0.0) / 2 + highest / 2
        candidates.append({"kind": kind, "k": k, "threshold": threshold, "feasible": True,
                           "true_positives": int((pos >= threshold).sum()), "lesion_patients": int(pos.size),
                           "true_negatives": int((neg < threshold).sum()), "negative_scans": int(neg.size),
                           "lesion_free_true_negatives": int((neg[free] < threshold).sum()),
                           "lesion_free_patients": int(free.sum())})
    feasible = [c for c in candidates if c["feasible"]]
    if not feasible:
        return RuleChoice(fallback, False, f"not chosen on data: no candidate rule scores the validation lesion "
                                           f"patients above 0; {old}", counts, candidates)
    best = max(feasible, key=lambda c: c["true_negatives"])  # max keeps the first (simplest) of a tie
    for c in candidates:
        for key, num, den in (("sensitivity", "true_positives", "lesion_patients"),
                              ("specificity", "true_negatives", "negative_scans"),
                              ("lesion_free_specificity", "lesion_free_true_negatives", "lesion_free_patients")):
            if c["feasible"]:
                c[key] = c[num] / c[den] if c[den] else math.nan
    rule = DetectorRule(best["kind"], best["k"], best["threshold"])
    basis = (f"chosen on validation: {len(positives)} lesion patient(s), {len(negatives)} negative scan(s) "
             f"({n_free} lesion-free patient(s), {len(negatives) - n_free} lesion patient(s)' slices more than "
             f"{settings.margin_slices + smoothing} slices from a lesion); the most specific rule with patient "
             f"sensitivity >= {settings.sensitivity_target:g} (ties: the simplest), its threshold halfway between the "
             f"highest negative score below it and the weakest lesion score it must keep")
    validation = {**counts, **{k: best[k] for k in ("sensitivity", "specificity", "lesion_free_specificity",
                                                    "true_positives", "true_negatives",
                                                    "lesion_free_true_negatives")}}
    return RuleChoice(rule, True, basis, validation, candidates)


# ---- segmenter: lesions that count -----------------------------------------------------------------


@dataclass
class PatientLesions:
    """One patient's predicted lesions (with volumes and, per detector, each lesion's highest slice probability) and
    reference lesions (None: no reference mask)."""

    patient_id: str
    split: str | None
    predicted: LesionLabels
    volume_ml: np.ndarray
    reference: LesionLabels | None
    detector_probability: dict[str, np.ndarray] = field(default_factory=dict)


def lesion_slices(lesions: LesionLabels, image: Any) -> list[np.ndarray]:
    """The LPS slice indices (those of the slice cache, :mod:`osteomet.ct.slices.orientation`) each lesion lies on;
    ``image``: the SimpleITK image whose array the lesions were labelled on."""
    from osteomet.ct.slices.orientation import lps_slices

    out = []
    for box, mask in zip(lesions.boxes, lesions.masks):
        zyx = np.argwhere(mask) + np.array([box[0].start, box[1].start, box[2].start])
        out.append(np.unique(lps_slices(image, zyx)))
    return out


def lesion_detector_probability(slices: Sequence[np.ndarray], scores: pd.DataFrame) -> np.ndarray:
    """Each lesion's highest slice probability in one patient's slice-score rows (``slice``, ``probability``); a slice
    the detector did not score counts 0."""
    probability = dict(zip(scores["slice"].astype(int), scores["probability"].astype(float)))
    return np.array([max((probability.get(int(z), 0.0) for z in zs), default=0.0) for zs in slices], float)


def lesion_volumes(lesions: LesionLabels, voxel_ml: float) -> np.ndarray:
    """Each lesion's volume (ml)."""
    return np.array([float(np.count_nonzero(m)) * voxel_ml for m in lesions.masks], float)


def lesion_outcome(patient: PatientLesions, rule: SegmenterRule, *, criterion: str = "iou",
                   iou_threshold: float = 0.1) -> dict[str, Any]:
    """What ``rule`` leaves of one patient: lesions counted, false positives, reference lesions detected (matched
    again on the counted lesions), and the call."""
    from osteomet.ct.lesions.matching import match_lesions

    keep = np.flatnonzero(rule.counts(patient.volume_ml, patient.detector_probability.get(rule.detector)
                                      if rule.detector is not None else None))
    kept = LesionLabels(patient.predicted.shape, [patient.predicted.boxes[i] for i in keep],
                        [patient.predicted.masks[i] for i in keep])
    row: dict[str, Any] = {"patient_id": patient.patient_id, "split": patient.split,
                           "n_predicted": patient.predicted.n, "n_kept": kept.n, "predicted": int(kept.n > 0)}
    if patient.reference is None:
        return {**row, "label": math.nan, "n_reference": math.nan, "n_detected": math.nan,
                "n_false_positive": math.nan}
    match = match_lesions(kept, patient.reference, criterion=criterion, iou_threshold=iou_threshold)
    return {**row, "label": float(patient.reference.n > 0), "n_reference": patient.reference.n,
            "n_detected": int(match.reference["detected"].sum()),
            "n_false_positive": int((~match.predicted["true_positive"].astype(bool)).sum())}


def lesion_outcomes(patients: Iterable[PatientLesions], rule: SegmenterRule,
                    settings: PatientRuleSettings | None = None) -> pd.DataFrame:
    """:func:`lesion_outcome` of every patient, one row each."""
    settings = settings or PatientRuleSettings()
    columns = ["patient_id", "split", "label", "n_predicted", "n_kept", "predicted", "n_reference", "n_detected",
               "n_false_positive"]
    rows = [lesion_outcome(p, rule, criterion=settings.criterion, iou_threshold=settings.iou_threshold)
            for p in patients]
    return pd.DataFrame(rows, columns=columns)


def segmenter_candidates(patients: Sequence[PatientLesions], settings: PatientRuleSettings) -> list[SegmenterRule]:
    """The rules to try, least change first (the tie-break order): volume only, then per detector that scored every
    one of ``patients`` (alphabetical) each probability, lowest first; volumes smallest first within each."""
    detectors = sorted(set.intersection(*(set(p.detector_probability) for p in patients))) if patients else []
    rules = [SegmenterRule(v) for v in settings.volumes_ml]
    for detector in detectors:
        for probability in settings.detector_probabilities:
            rules += [SegmenterRule(v, detector, probability) for v in settings.volumes_ml]
    return rules


def choose_segmenter_rule(patients: Sequence[PatientLesions],
                          settings: PatientRuleSettings | None = None) -> RuleChoice:
    """The rule with the fewest false-positive lesions per validation patient at lesion sensitivity >= target, the
    least-changing of a tie (module docstring)."""
    settings = settings or PatientRuleSettings()
    val = [p for p in patients if p.split == "val" and p.reference is not None]
    n_reference = sum(p.reference.n for p in val)  # type: ignore[union-attr]
    n_free = sum(p.reference.n == 0 for p in val)  # type: ignore[union-attr]
    counts = {"n_patients": len(val), "n_lesion_free_patients": n_free, "n_reference_lesions": n_reference}
    if not val:
        return RuleChoice(SegmenterRule(), False, "not chosen on data: no validation patient with a reference mask; "
                                                  "every predicted lesion counts", counts)
    if n_reference == 0:
        return RuleChoice(SegmenterRule(), False, "not chosen on data: validation has no reference lesion, so the "
                                                  "lesion sensitivity cannot be checked; every predicted lesion "
                                                  "counts", counts)
    candidates = []
    rules = segmenter_candidates(val, settings)
    for order, rule in enumerate(rules):
        table = lesion_outcomes(val, rule, settings)
        free = table[table["label"] == 0]
        candidates.append({"order": order, **asdict(rule), "detected": int(table["n_detected"].sum()),
                           "reference_lesions": n_reference,
                           "lesion_sensitivity": float(table["n_detected"].sum()) / n_reference,
                           "false_positives": int(table["n_false_positive"].sum()), "patients": len(val),
                           "fp_per_patient": float(table["n_false_positive"].mean()),
                           "lesion_free_false_positives": int(free["n_false_positive"].sum()),
                           "fp_per_lesion_free_patient": float(free["n_false_positive"].mean()) if len(free)
                           else math.nan,
                           "lesion_free_called_negative": int((free["predicted"] == 0).sum())})
    unfiltered = candidates[0]["detected"]  # the first candidate removes nothing (volume 0, no detector)
    need = min(math.ceil(settings.lesion_sensitivity_target * n_reference - 1e-9), unfiltered)
    feasible = [c for c in candidates if c["detected"] >= need]
    best = min(feasible, key=lambda c: (c["false_positives"], c["order"]))
    reached = unfiltered >= math.ceil(settings.lesion_sensitivity_target * n_reference - 1e-9)
    basis = (f"chosen on validation: {len(val)} patient(s) ({n_free} lesion-free), {n_reference} reference "
             f"lesion(s); the fewest false-positive lesions per patient with lesion sensitivity >= "
             + (f"{settings.lesion_sensitivity_target:g}" if reached else
                f"{unfiltered}/{n_reference} (the unfiltered segmenter's: the target "
                f"{settings.lesion_sensitivity_target:g} is out of reach)")
             + " (ties: the rule that changes least: no detector, then the lower detector probability, then the "
               "smaller volume)")
    validation = {**counts, **{k: best[k] for k in ("lesion_sensitivity", "detected", "false_positives",
                                                    "fp_per_patient", "fp_per_lesion_free_patient",
                                                    "lesion_free_called_negative")}}
    return RuleChoice(rules[best["order"]], True, basis, validation, candidates)


def apply_segmenter_rule(rule: SegmenterRule, lesions: pd.DataFrame,
                         patients: Sequence[str] | None = None) -> pd.DataFrame:
    """Patient calls of a lesion table (``lesions.csv``: patient_id, volume_ml, and with a detector rule
    ``detector_probability``): patient_id, n_lesions, n_kept, predicted; ``patients`` lists the patients to call
    (those without a lesion row are negative)."""
    needed = ["patient_id", "volume_ml"] + ([DETECTOR_COLUMN] if rule.detector is not None else [])
    missing = [c for c in needed if c not in lesions]
    if missing and len(lesions):
        raise InputError(f"lesion table: missing column(s) {', '.join(missing)} (expected those of lesions.csv"
                         + (f", with each lesion's highest slice probability from the {rule.detector} detector, "
                            f"which the rule ({rule.describe()}) asks for: score the CT with that detector" if
                            DETECTOR_COLUMN in missing else "") + ")")
    ids = list(patients) if patients is not None else list(dict.fromkeys(lesions.get("patient_id", [])))
    rows = []
    for patient in ids:
        part = lesions[lesions["patient_id"] == patient] if len(lesions) else lesions
        n_kept = int(rule.counts(part["volume_ml"].to_numpy(float), part[DETECTOR_COLUMN].to_numpy(float)
                                 if rule.detector is not None else None).sum()) if len(part) else 0
        rows.append({"patient_id": patient, "n_lesions": int(len(part)), "n_kept": n_kept,
                     "predicted": int(n_kept > 0)})
    return pd.DataFrame(rows, columns=["patient_id", "n_lesions", "n_kept", "predicted"])


# ---- metrics ------------------------------------------------------------------------------------


def _splits(values: Iterable[Any]) -> list[str]:
    present = [str(v) for v in dict.fromkeys(values) if isinstance(v, str)]
    return [s for s in SPLIT_ORDER if s in present] + sorted(s for s in present if s not in SPLIT_ORDER)


def patient_metrics(calls: pd.DataFrame, settings: PatientRuleSettings | None = None) -> pd.DataFrame:
    """Per split: patient sensitivity and specificity (Wilson); with lesion columns (``n_false_positive``,
    ``n_reference``, ``n_detected``) also false-positive lesions per lesion-free patient and per patient
    (bootstrap over patients) and lesion sensitivity (Wilson). Unlabelled patients (label NaN) are left out."""
    from osteomet.evaluation.bootstrap import bootstrap_mean
    from osteomet.evaluation.proportions import wilson_interval

    settings = settings or PatientRuleSettings()
    level = settings.level
    rows = []

    def proportion(split: str, metric: str, k: int, n: int, n_patients: int) -> None:
        rows.append({"split": split, "metric": metric, **dict(zip(("estimate", "ci_low", "ci_high"),
                                                                  wilson_interval(k, n, level))),
                     "numerator": k, "denominator": n, "n_patients": n_patients, "ci_method": "wilson"})

    def mean(split: str, metric: str, values: np.ndarray) -> None:
        stat = bootstrap_mean(values, n_resamples=settings.n_resamples, seed=settings.seed, level=level) \
            if values.size else (math.nan, math.nan, math.nan)
        rows.append({"split": split, "metric": metric, **dict(zip(("estimate", "ci_low", "ci_high"), map(float, stat))),
                     "numerator": float(values.sum()), "denominator": int(values.size), "n_patients": int(values.size),
                     "ci_method": "bootstrap_patients"})

    labelled = calls[calls["label"].notna()]
    counts = ["n_false_positive", "n_reference", "n_detected"]
    # a detector's rows in a table shared with segmenters carry these columns empty
    lesions = all(c in calls for c in counts) and bool(calls[counts].notna().any().all())
    for split in _splits(labelled["split"]):
        part = labelled[labelled["split"] == split]
        positive, negative = part[part["label"] > 0], part[part["label"] == 0]
        proportion(split, "patient_sensitivity", int(positive["predicted"].sum()), len(positive), len(positive))
        proportion(split, "patient_specificity", int((negative["predicted"] == 0).sum()), len(negative), len(negative))
        if lesions:
            mean(split, "fp_lesions_per_lesion_free_patient", negative["n_false_positive"].to_numpy(float))
            mean(split, "fp_lesions_per_patient", part["n_false_positive"].to_numpy(float))
            proportion(split, "lesion_sensitivity", int(part["n_detected"].sum()), int(part["n_reference"].sum()),
                       int((part["n_reference"] > 0).sum()))
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


__all__ = ["DETECTOR_COLUMN", "DetectorRule", "PatientLesions", "PatientRuleSettings", "RuleChoice", "SegmenterRule",
           "apply_detector_rule", "apply_segmenter_rule", "choose_detector_rule", "choose_segmenter_rule",
           "lesion_detector_probability", "lesion_outcomes", "lesion_slices", "lesion_volumes", "patient_metrics",
           "segmenter_candidates", "slice_statistic"]
