"""Report sections of the statistics: cohort characteristics, ROC/AUC, DeLong comparisons, calibration.

A section whose files the run did not produce comes back without a body and with a note
saying which files were looked for, so the page leaves it out instead of showing it broken.
"""

from __future__ import annotations

import pandas as pd

from osteomet.layout import CALIBRATION, COHORT_TABLE, DELONG, METRICS, RunLayout, roc_figure
from osteomet.report.html import CI_LABELS, Section, note, table
from osteomet.report.run_files import png_figures, read_csv

COHORT_ORDER = ("train", "val", "test", "external", "new")


def _cohorts(names: list[str]) -> list[str]:
    known = [c for c in COHORT_ORDER if c in names]
    return known + sorted(set(names) - set(known))


COHORT_COLUMNS = ("variable", "level", "summary", "overall", "label=0", "label=1", "n_missing", "test", "p", "p_adj",
                  "or_uni", "or_uni_low", "or_uni_high", "p_uni", "or_multi", "or_multi_low", "or_multi_high",
                  "p_multi", "or_note")


def cohort_section(layout: RunLayout) -> Section:
    section = Section("cohort", "Cohort characteristics")
    frame = read_csv(layout.cohort_table)
    if frame is None:
        section.note = f"no evaluation/{COHORT_TABLE} (osteomet evaluate cohort)"
        return section
    labels = {"label=0": "no BM", "label=1": "BM", "p_adj": "p (BH)", "or_uni": "OR (univariable)",
              "or_uni_low": "low", "or_uni_high": "high", "p_uni": "p (uni)", "or_multi": "OR (multivariable)",
              "or_multi_low": "low", "or_multi_high": "high", "p_multi": "p (multi)", "or_note": "note"}
    section.body = (note("By bone-metastasis status; p-values adjusted by Benjamini-Hochberg; odds ratios with 95% "
                         "CIs (NA where a column is aliased, as R's glm reports it).")
                    + table(frame, COHORT_COLUMNS, labels=labels))
    return section


def _metrics(layout: RunLayout) -> pd.DataFrame | None:
    return read_csv(layout.evaluation / METRICS)


def roc_section(layout: RunLayout) -> Section:
    section = Section("roc", "ROC curves by cohort")
    metrics = _metrics(layout)
    images = sorted(layout.evaluation.glob("roc_*.png")) if layout.evaluation.is_dir() else []
    if metrics is None and not images:
        section.note = f"no evaluation/{METRICS} or roc_<cohort>.png (osteomet evaluate predictions)"
        return section
    parts = []
    if images:
        cohorts = _cohorts([p.stem[len("roc_"):] for p in images])
        parts.append(png_figures([(layout.evaluation / roc_figure(c), f"ROC, {c} cohort") for c in cohorts], width=420))
    if metrics is not None and "metric" in metrics:
        auc = metrics[(metrics["metric"] == "auc") & (metrics.get("ci_method", "delong") == "delong")]
        parts.append("<h3>AUC with DeLong 95% CI</h3>" + table(auc, ("model", "cohort", "estimate", "ci_low", "ci_high",
                                                                     "n", "n_pos", "note"),
                                                               labels={"estimate": "AUC", **CI_LABELS}))
        other = metrics[metrics["metric"] != "auc"]
        if len(other):
            parts.append("<details><summary>Metrics at the Youden threshold (bootstrap 95% CI)</summary>"
                         + table(other, ("model", "cohort", "metric", "estimate", "ci_low", "ci_high", "threshold",
                                         "threshold_split", "n", "n_pos"), labels=CI_LABELS) + "</details>")
    section.body = "".join(parts)
    return section


def delong_section(layout: RunLayout) -> Section:
    section = Section("delong", "DeLong comparison of models")
    frame = read_csv(layout.evaluation / DELONG)
    if frame is None:
        section.note = f"no evaluation/{DELONG} (needs two or more models in osteomet evaluate predictions)"
        return section
    section.body = (note("Paired DeLong test of the AUCs of two models on the same patients; p adjusted by Holm "
                         "within each cohort.")
                    + table(frame, ("split", "model_a", "model_b", "n", "auc_a", "auc_b", "z", "p", "diff_low",
                                    "diff_high", "p_holm"),
                            labels={"split": "cohort", "diff_low": "AUC difference, 95% CI low",
                                    "diff_high": "high", "p_holm": "p (Holm)"}))
    return section


def calibration_section(layout: RunLayout) -> Section:
    section = Section("calibration", "Calibration and decision curves")
    frame = read_csv(layout.evaluation / CALIBRATION)
    folder = layout.evaluation
    curves = sorted(folder.glob("calibration_*.png")) + sorted(folder.glob("decision_curve_*.png")) \
        if folder.is_dir() else []
    if frame is None and not curves:
        section.note = f"no evaluation/{CALIBRATION} or calibration_/decision_curve_<cohort>.png"
        return section
    parts = []
    if frame is not None:
        shown = [c for c in ("model", "cohort", "n", "events", "brier", "calibration_intercept",
                             "calibration_intercept_low", "calibration_intercept_high", "calibration_slope",
                             "calibration_slope_low", "calibration_slope_high", "eavg", "emax") if c in frame]
        parts.append(table(frame, tuple(shown),
                           labels={"brier": "Brier score", "calibration_intercept": "intercept",
                                   "calibration_intercept_low": "intercept 95% CI low",
                                   "calibration_intercept_high": "intercept 95% CI high",
                                   "calibration_slope": "slope", "calibration_slope_low": "slope 95% CI low",
                                   "calibration_slope_high": "slope 95% CI high", "eavg": "Eavg (ICI)",
                                   "emax": "Emax"}))
    cohorts = _cohorts(sorted({p.stem.split("_", 1)[1] if p.stem.startswith("calibration_")
                               else p.stem[len("decision_curve_"):] for p in curves}))
    for cohort in cohorts:
        # the calibration grid (a panel per model, loess curve, CI band, risk histogram) needs the page's width
        parts.append(png_figures([(folder / f"calibration_{cohort}.png", f"Calibration, {cohort} cohort")], width=860))
        parts.append(png_figures([(folder / f"decision_curve_{cohort}.png", f"Decision curve, {cohort} cohort")],
                                 width=560))
    section.body = "".join(parts)
    return section
