"""Lesion-level, patient-level and bone-level detection statistics with confidence intervals.

Definitions (per patient, then pooled over the cohort):

* **Lesion sensitivity**: detected reference lesions / reference lesions (matching in
  :mod:`osteomet.ct.lesions.matching`). Wilson score interval. Lesions of one patient are not
  independent, so the interval is optimistic when patients have many lesions; the
  per-patient table lets a study use a cluster bootstrap instead.
* **False positives per patient**: unmatched predicted lesions / patients; percentile
  bootstrap interval over patients (:func:`osteomet.evaluation.bootstrap.resample_indices`,
  seeded).
* **Patient level**: a patient is positive when it has a reference lesion and called
  positive when it has a predicted lesion. Specificity = patients with neither / patients
  without reference lesions; sensitivity = positive patients with at least one *detected*
  lesion / positive patients. Wilson intervals.
* **Bone level**: every (patient, bone) pair of the bones present in the patient's bone map
  is a unit. It is positive when a reference lesion is assigned to that bone and called
  positive when a predicted lesion is (bone assignment in :mod:`osteomet.ct.lesions.bones`;
  lesions outside bone or tied between bones call no bone). Specificity = negative pairs
  without a prediction / negative pairs; sensitivity likewise. Wilson intervals.

Breakdowns: lesion sensitivity by the *reference* lesion's bone group, kind (diffuse/focal)
and weight-bearing; false positives by the *predicted* lesion's; bone-level statistics by
the bone's group and weight-bearing (kind is a lesion property, so it has no bone-level
breakdown). Lesions without a bone are reported under their ``bone_status``
(``outside_bone`` or ``tie``) in the bone-group breakdown.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from osteomet.ct.lesions.analysis import LesionAnalysis
from osteomet.ct.lesions.matching import match_lesions
from osteomet.data.totalsegmentator import TOTALSEG_BONES
from osteomet.errors import InputError
from osteomet.evaluation.bootstrap import bootstrap_mean
from osteomet.evaluation.proportions import wilson_interval
from osteomet.utils.tables import stack_rows

METRIC_COLUMNS = ["metric", "breakdown", "subgroup", "estimate", "ci_low", "ci_high", "numerator", "denominator",
                  "n_patients", "ci_method"]
BREAKDOWNS = ("bone_group", "kind", "weight_bearing")


@dataclass
class PatientEvaluation:
    """One patient's matched lesions and bone-level calls."""

    patient_id: str
    reference: pd.DataFrame  # reference lesion table + matched_pred_id, iou, detected
    predicted: pd.DataFrame  # predicted lesion table + matched_ref_id, iou, true_positive, false_positive, ...
    bones: pd.DataFrame  # one row per bone present: ids, group, weight_bearing, reference_/predicted_positive

    def summary(self) -> dict[str, object]:
        return {"patient_id": self.patient_id, "n_reference": int(len(self.reference)),
                "n_predicted": int(len(self.predicted)), "n_detected": int(self.reference["detected"].sum()),
                "n_false_positive": int(self.predicted["false_positive"].sum()),
                "reference_positive": bool(len(self.reference)), "predicted_positive": bool(len(self.predicted))}


def _with_group(table: pd.DataFrame) -> pd.DataFrame:
    """Lesions without an assigned bone are grouped under their bone status."""
    table = table.copy()
    if "bone_group" in table:
        table["bone_group"] = table["bone_group"].where(table["bone_group"].notna(), table.get("bone_status"))
    return table


def evaluate_patient(pred: LesionAnalysis, ref: LesionAnalysis, *, criterion: str = "iou", iou_threshold: float = 0.1,
                     patient_id: str | None = None) -> PatientEvaluation:
    """Match ``pred`` to ``ref`` lesions and make the bone-level calls for one patient."""
    pid = patient_id or ref.patient_id or pred.patient_id or "patient"
    match = match_lesions(pred.lesions, ref.lesions, criterion=criterion, iou_threshold=iou_threshold)
    reference = ref.table.drop(columns=["patient_id"], errors="ignore").merge(match.reference, on="lesion_id")
    predicted = pred.table.drop(columns=["patient_id"], errors="ignore").merge(match.predicted, on="lesion_id")
    predicted["false_positive"] = ~predicted["true_positive"].astype(bool)
    reference.insert(0, "patient_id", pid)
    predicted.insert(0, "patient_id", pid)
    bone_ids = sorted(set(ref.bones_present) | set(pred.bones_present))
    ref_bones = set(reference["bone_id"].dropna().astype(int)) if "bone_id" in reference else set()
    pred_bones = set(predicted["bone_id"].dropna().astype(int)) if "bone_id" in predicted else set()
    bones = pd.DataFrame([{
        "patient_id": pid, "bone_id": b, "bone_name": TOTALSEG_BONES[b].name, "bone_group": TOTALSEG_BONES[b].group,
        "weight_bearing": TOTALSEG_BONES[b].weight_bearing, "reference_positive": b in ref_bones,
        "predicted_positive": b in pred_bones} for b in bone_ids],
        columns=["patient_id", "bone_id", "bone_name", "bone_group", "weight_bearing", "reference_positive",
                 "predicted_positive"])
    return PatientEvaluation(pid, _with_group(reference), _with_group(predicted), bones)


def _mean_interval(values: np.ndarray, *, level: float, n_resamples: int,
                   seed: int | None) -> tuple[float, float, float]:
    """Mean over patients with a percentile bootstrap interval; NaNs for a subgroup without patients."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return float("nan"), float("nan"), float("nan")
    return tuple(bootstrap_mean(values, n_resamples=n_resamples, seed=seed, level=level))  # type: ignore[return-value]


def _row(metric: str, breakdown: str, subgroup: object, stat: tuple[float, float, float], num: float, den: float,
         n_patients: int, method: str) -> dict[str, object]:
    return {"metric": metric, "breakdown": breakdown, "subgroup": str(subgroup), "estimate": stat[0],
            "ci_low": stat[1], "ci_high": stat[2], "numerator": num, "denominator": den, "n_patients": n_patients,
            "ci_method": method}


def _subgroups(frames: list[pd.DataFrame], column: str) -> list[object]:
    values: set[object] = set()
    for frame in frames:
        if column in frame:
            values.update(v for v in frame[column].dropna().tolist())
    return sorted(values, key=str)


def lesion_metrics(evaluations: list[PatientEvaluation], *, level: float = 0.95, n_resamples: int = 2000,
                   seed: int | None = 0) -> pd.DataFrame:
    """All statistics of the module docstring, overall and by breakdown, one row each."""
    if not evaluations:
        raise InputError("no patients to evaluate")
    n_pat = len(evaluations)
    ref = stack_rows([e.reference for e in evaluations])
    pred = stack_rows([e.predicted for e in evaluations])
    bones = stack_rows([e.bones for e in evaluations])
    pids = [e.patient_id for e in evaluations]
    rows = []

    def sensitivity(breakdown: str, subgroup: object, table: pd.DataFrame) -> None:
        k, n = int(table["detected"].sum()), int(len(table))
        rows.append(_row("lesion_sensitivity", breakdown, subgroup, wilson_interval(k, n, level), k, n,
                         int(table["patient_id"].nunique()), "wilson"))

    def fp_per_patient(breakdown: str, subgroup: object, table: pd.DataFrame) -> None:
        fp = table[table["false_positive"].astype(bool)]
        per_patient = fp.groupby("patient_id").size().reindex(pids, fill_value=0).to_numpy()
        stat = _mean_interval(per_patient, level=level, n_resamples=n_resamples, seed=seed)
        rows.append(_row("fp_per_patient", breakdown, subgroup, stat, int(per_patient.sum()), n_pat, n_pat,
                         "bootstrap_patients"))

    def bone_level(breakdown: str, subgroup: object, table: pd.DataFrame) -> None:
        neg = table[~table["reference_positive"].astype(bool)]
        pos = table[table["reference_positive"].astype(bool)]
        k, n = int((~neg["predicted_positive"].astype(bool)).sum()), len(neg)
        rows.append(_row("bone_specificity", breakdown, subgroup, wilson_interval(k, n, level), k, n,
                         int(neg["patient_id"].nunique()), "wilson"))
        k, n = int(pos["predicted_positive"].astype(bool).sum()), len(pos)
        rows.append(_row("bone_sensitivity", breakdown, subgroup, wilson_interval(k, n, level), k, n,
                         int(pos["patient_id"].nunique()), "wilson"))

    sensitivity("all", "all", ref)
    fp_per_patient("all", "all", pred)
    summaries = pd.DataFrame([e.summary() for e in evaluations])
    negatives = summaries[~summaries["reference_positive"]]
    k, n = int((~negatives["predicted_positive"]).sum()), len(negatives)
    rows.append(_row("patient_specificity", "all", "all", wilson_interval(k, n, level), k, n, n, "wilson"))
    positives = summaries[summaries["reference_positive"]]
    k, n = int((positives["n_detected"] > 0).sum()), len(positives)
    rows.append(_row("patient_sensitivity", "all", "all", wilson_interval(k, n, level), k, n, n, "wilson"))
    bone_level("all", "all", bones)
    for breakdown in BREAKDOWNS:
        for value in _subgroups([ref, pred], breakdown):
            if breakdown in ref:
                sensitivity(breakdown, value, ref[ref[breakdown] == value])
            if breakdown in pred:
                fp_per_patient(breakdown, value, pred[pred[breakdown] == value])
        if breakdown != "kind":
            for value in _subgroups([bones], breakdown):
                bone_level(breakdown, value, bones[bones[breakdown] == value])
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)
