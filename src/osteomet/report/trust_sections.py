"""Report section of the prediction sets: conformal coverage per model, cohort and class, and the recalibration.

Why: a Mondrian conformal set promises that each class's true patients are left out of their
set at most ``alpha`` of the time; the test and external cohorts show whether that held on
patients the calibration never saw (the external centre's patients need not be exchangeable
with the study's: a coverage below nominal there is the shift the promise does not cover),
and how often the sets were uncertain ({no BM, BM}), which is the price of the promise.
"""

from __future__ import annotations

from osteomet.layout import COVERAGE, RECALIBRATION, STAGE_RECORD, RunLayout
from osteomet.report.html import CI_LABELS, Section, note, table
from osteomet.report.run_files import read_csv
from osteomet.utils.files import read_json

COLUMNS = ("model", "split", "class", "n", "coverage", "ci_low", "ci_high", "nominal", "uncertain", "empty",
           "n_calibration")
RECALIBRATION_COLUMNS = ("model", "intercept", "slope", "n", "events")


def trust_section(layout: RunLayout) -> Section:
    section = Section("trust", "Prediction sets (conformal) and recalibration")
    frame = read_csv(layout.trust / COVERAGE)
    if frame is None:
        section.note = f"no trust/{COVERAGE} (the conformal stage of osteomet run mri, conformal.enabled: true)"
        return section
    record = read_json(layout.trust / STAGE_RECORD) or {}
    summary = record.get("summary") or {}
    alpha = summary.get("alpha")
    level = f"{1 - float(alpha):.0%} confidence per class (error rate {float(alpha):g})" if alpha is not None else ""
    parts = [note(f"Mondrian (class-conditional) split-conformal prediction sets, {level}: calibrated per model on "
                  "its validation and out-of-fold training patients (nonconformity: 1 - probability of the true "
                  "class), judged on test and external. Coverage: the share of a class's patients whose set holds "
                  "their class (Wilson 95% CI); uncertain: sets holding both classes; empty: sets holding "
                  "neither.")]
    short = [f"{model} ({', '.join(c for c, ok in (info.get('excludable') or {}).items() if not ok)})"
             for model, info in (summary.get("models") or {}).items()
             if not all((info.get("excludable") or {}).values())]
    if short:
        parts.append(note("Too few calibration patients to ever leave a class out at this error rate, so that "
                          "class is in every set: " + "; ".join(short) + "."))
    parts.append(table(frame, COLUMNS, labels={**CI_LABELS, "split": "cohort", "nominal": "nominal",
                                               "uncertain": "uncertain share", "empty": "empty share",
                                               "n_calibration": "calibration n"}))
    fits = []
    for model, info in (summary.get("models") or {}).items():
        if "recalibration" not in info:  # the stage ran with the recalibration off
            continue
        fitted = read_json(layout.trust / model / RECALIBRATION)
        if fitted:
            fits.append({"model": model, **{k: fitted.get(k) for k in RECALIBRATION_COLUMNS[1:]}})
        elif (info.get("recalibration") or {}).get("reason"):
            fits.append({"model": model, "reason": info["recalibration"]["reason"]})
    if fits:
        import pandas as pd

        parts.append("<h3>Logistic recalibration (validation + out-of-fold training)</h3>"
                     + table(pd.DataFrame(fits), (*RECALIBRATION_COLUMNS, "reason"),
                             labels={"events": "with BM", "reason": "not fitted because"}))
    section.body = "".join(parts)
    return section


__all__ = ["trust_section"]
