"""One function per report section: read a run directory's files by their layout names, return a Section.

A section whose files the run did not produce comes back without a body and with a note
saying which files were looked for, so the page leaves it out instead of showing it broken.
Tables name their columns explicitly (see :func:`osteomet.report.html.table`): nothing that
a stage or a user added to a CSV, an identifier least of all, reaches the page by accident.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pandas as pd

from osteomet.layout import (
    AUTO_DIR,
    CALIBRATION,
    COHORT_TABLE,
    DELONG,
    MASK_SUFFIX,
    METRICS,
    SUMMARY,
    RunLayout,
    roc_figure,
)
from osteomet.report.html import Section, esc, figure, key_values, note, table
from osteomet.report.run_record import flatten, read_settings, run_kind, seeds, settings_folders, timings, versions
from osteomet.utils.files import read_json

#: How many patients the image sections show.
N_PATIENTS = 3
COHORT_ORDER = ("train", "val", "test", "external", "new")
CI = {"ci_low": "95% CI low", "ci_high": "95% CI high"}


def read_csv(path: Path) -> pd.DataFrame | None:
    """A CSV written by a stage, patient ids as text; None when missing, empty or unreadable."""
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path, dtype={"patient_id": str})
    except (OSError, ValueError, pd.errors.ParserError):
        return None
    return frame if len(frame.columns) else None


def read_png(path: Path) -> bytes | None:
    """PNG bytes of a figure a stage wrote; None when missing, not a PNG or damaged (never a broken image)."""
    import io

    from PIL import Image

    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as image:
            if image.format != "PNG":
                return None
            image.load()  # decodes every row: a truncated file fails here
    except (OSError, SyntaxError, ValueError):
        return None
    return data


def _cohorts(names: list[str]) -> list[str]:
    known = [c for c in COHORT_ORDER if c in names]
    return known + sorted(set(names) - set(known))


def _figures(paths: list[tuple[Path, str]], width: int | None = None) -> str:
    parts = [figure(data, caption, width=width) for path, caption in paths if (data := read_png(path)) is not None]
    return "".join(parts)


def _safe_id(patient_id: str) -> bool:
    return bool(patient_id) and Path(patient_id).name == patient_id and patient_id not in (".", "..")


def _first(folder: Path, name: str) -> Path | None:
    """The first ``name`` file below ``folder`` (path order); stage folders may nest (``deep/grid/grid.csv``)."""
    if not folder.is_dir():
        return None
    found = sorted(p for p in folder.rglob(name) if p.is_file())
    return found[0] if found else None


def _first_table(folder: Path, name: str) -> tuple[Path | None, pd.DataFrame | None]:
    """:func:`_first` and its table (None when absent or unreadable): what most sections start from."""
    path = _first(folder, name)
    return path, read_csv(path) if path else None


# ---- bpMRI -----------------------------------------------------------------------------------------

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
        parts.append(_figures([(layout.evaluation / roc_figure(c), f"ROC, {c} cohort") for c in cohorts], width=420))
    if metrics is not None and "metric" in metrics:
        auc = metrics[(metrics["metric"] == "auc") & (metrics.get("ci_method", "delong") == "delong")]
        parts.append("<h3>AUC with DeLong 95% CI</h3>" + table(auc, ("model", "cohort", "estimate", "ci_low", "ci_high",
                                                                     "n", "n_pos", "note"),
                                                               labels={"estimate": "AUC", **CI}))
        other = metrics[metrics["metric"] != "auc"]
        if len(other):
            parts.append("<details><summary>Metrics at the Youden threshold (bootstrap 95% CI)</summary>"
                         + table(other, ("model", "cohort", "metric", "estimate", "ci_low", "ci_high", "threshold",
                                         "threshold_split", "n", "n_pos"), labels=CI) + "</details>")
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
        parts.append(table(frame, ("model", "cohort", "n", "brier", "calibration_intercept", "calibration_slope"),
                           labels={"brier": "Brier score", "calibration_intercept": "intercept",
                                   "calibration_slope": "slope"}))
    cohorts = _cohorts(sorted({p.stem.split("_", 1)[1] if p.stem.startswith("calibration_")
                               else p.stem[len("decision_curve_"):] for p in curves}))
    for cohort in cohorts:
        pair = [(folder / f"calibration_{cohort}.png", f"Calibration, {cohort} cohort"),
                (folder / f"decision_curve_{cohort}.png", f"Decision curve, {cohort} cohort")]
        parts.append(_figures(pair, width=420))
    section.body = "".join(parts)
    return section


GRID_COLUMNS = ("name", "depth", "optimizer", "learning_rate", "val_auc", "val_auc_low", "val_auc_high", "val_acc",
                "val_score", "n_val", "n_val_positive", "best_epoch", "epochs_run", "stopped_early", "seconds")


def grid_section(layout: RunLayout) -> Section:
    section = Section("grid", "Deep-learning grid search")
    grid, frame = _first_table(layout.deep, "grid.csv")
    if frame is None:
        section.note = "no deep/.../grid.csv (osteomet deep grid)"
        return section
    parts = [_figures([(grid.parent / "heatmap.png", "Selection score (validation AUC, smoothed over epochs when "
                                                      "the settings say so) by depth, learning rate and optimiser")],
                      width=640)]
    winner = read_json(grid.parent / "winner.json")
    if winner:
        parts.append("<h3>Chosen configuration</h3>" + key_values(
            (k, winner.get(k)) for k in ("name", "depth", "optimizer", "learning_rate", "val_auc", "val_score",
                                         "n_train", "n_val", "rule") if k in winner))
    parts.append("<h3>Every configuration</h3>" + table(frame, GRID_COLUMNS, labels={"val_auc": "validation AUC",
                                                                              "val_score": "selection score"}))
    section.body = "".join(parts)
    return section


def gradcam_section(layout: RunLayout) -> Section:
    section = Section("gradcam", "Grad-CAM")
    index, frame = _first_table(layout.deep, "gradcam.csv")
    if frame is None or "patient_id" not in frame:
        section.note = "no deep/.../gradcam.csv (osteomet deep gradcam)"
        return section
    shown = [pid for pid in frame["patient_id"].astype(str) if _safe_id(pid)][:N_PATIENTS]
    images = _figures([(index.parent / "png" / f"{pid}.png", f"Grad-CAM, patient {pid}") for pid in shown])
    if not images:
        section.note = f"{index.relative_to(layout.root)} lists no patient with a png/<patient>.png overlay"
        return section
    section.body = (note("Axial, coronal and sagittal T2 slices through the tumour with the map of the chosen model "
                         "(tumour outline in green).") + images
                    + table(frame, ("patient_id", "prob", "cam_empty", "mean_in_tumour", "mean_outside"),
                            labels={"prob": "p(BM)", "cam_empty": "map empty"}, max_rows=20))
    return section


def _overlays(layout: RunLayout, metrics: pd.DataFrame | None) -> str:
    """Overlays the segmentation stage saved, else drawn here from the preprocessed T2 and the automatic masks."""
    saved = sorted((layout.masks / "overlays").glob("*.png")) if (layout.masks / "overlays").is_dir() else []
    if saved:
        return _figures([(p, f"Segmentation, patient {p.stem}") for p in saved[:N_PATIENTS]])
    if metrics is None or "patient_id" not in metrics or not (layout.preprocess / "index.csv").is_file():
        return ""
    from osteomet.mri.segmentation.overlay import overlay_figure
    from osteomet.utils.figures import png_bytes

    held_out = metrics[metrics["split"].isin(["test", "external"])] if "split" in metrics else metrics.iloc[:0]
    ids = [pid for pid in (held_out if len(held_out) else metrics)["patient_id"].astype(str) if _safe_id(pid)]
    parts = []
    for pid in ids:
        mask = layout.masks / AUTO_DIR / f"{pid}{MASK_SUFFIX}"
        if not mask.is_file() or not (layout.preprocess / "cases" / pid).is_dir():
            continue
        parts.append(figure(png_bytes(overlay_figure(layout.preprocess, pid, mask)), f"Segmentation, patient {pid}"))
        if len(parts) == N_PATIENTS:
            break
    return "".join(parts)


def segmentation_section(layout: RunLayout) -> Section:
    section = Section("segmentation", "Tumour segmentation")
    summary = read_csv(layout.masks / SUMMARY)
    metrics = read_csv(layout.masks / METRICS)
    if summary is None and metrics is None:
        section.note = f"no segmentation/masks/{METRICS} (osteomet segment predict)"
        return section
    parts = []
    if summary is not None:
        parts.append(table(summary, ("split", "metric", "n", "mean", "ci_low", "ci_high"),
                           labels={"split": "cohort", **CI}))
    overlays = _overlays(layout, metrics)
    parts.append(overlays or note("No overlay: neither segmentation/masks/overlays/*.png nor the preprocessed "
                                  "images to draw one from."))
    if metrics is not None:
        parts.append("<details><summary>Per patient</summary>"
                     + table(metrics, ("patient_id", "split", "predicted_voxels", "dice", "precision", "recall"))
                     + "</details>")
    section.body = "".join(parts)
    return section


# ---- CT ----------------------------------------------------------------------------------------------

LESION_COLUMNS = ("patient_id", "lesion_id", "volume_ml", "n_slices", "bone_name", "bone_group", "weight_bearing",
                  "kind", "cluster_id", "mean_hu", "true_positive", "false_positive", "iou")
PATIENT_COLUMNS = ("patient_id", "n_lesions", "total_volume_ml", "n_clusters", "n_diffuse", "n_focal",
                   "n_weight_bearing", "n_reference", "n_detected", "n_false_positive")


def ct_lesions_section(layout: RunLayout) -> Section:
    section = Section("ct-lesions", "CT lesions")
    folder = layout.ct_lesions
    lesions, patients, metrics = (read_csv(folder / n) for n in ("lesions.csv", "patients.csv", METRICS))
    if lesions is None and patients is None:
        section.note = "no ct/lesions/lesions.csv (osteomet ct lesions-cohort)"
        return section
    parts = []
    if metrics is not None:
        parts.append("<h3>Lesion-, bone- and patient-level statistics</h3>"
                     + table(metrics, ("metric", "breakdown", "subgroup", "estimate", "ci_low", "ci_high",
                                       "numerator", "denominator", "n_patients", "ci_method"), labels=CI))
    if patients is not None:
        parts.append("<h3>Per patient</h3>" + table(patients, PATIENT_COLUMNS, max_rows=50))
    if lesions is not None:
        parts.append("<h3>Lesions</h3>" + table(lesions, LESION_COLUMNS, max_rows=50))
    section.body = "".join(parts)
    return section


def ct_sensitivity_section(layout: RunLayout) -> Section:
    from osteomet.report.charts import bone_group_sensitivity, sensitivity_figure
    from osteomet.utils.figures import png_bytes

    section = Section("ct-sensitivity", "Lesion sensitivity by bone group")
    reference = read_csv(layout.ct_lesions / "reference_lesions.csv")
    if reference is None or not {"detected", "bone_group"} <= set(reference.columns) or reference.empty:
        section.note = "no ct/lesions/reference_lesions.csv (needs predicted masks: ct lesions-cohort -p)"
        return section
    rates = bone_group_sensitivity(reference)
    section.body = (figure(png_bytes(sensitivity_figure(rates)), "Lesion sensitivity by bone group (Wilson 95% CI)")
                    + table(rates, ("bone_group", "detected", "lesions", "sensitivity", "ci_low", "ci_high"),
                            labels=CI))
    return section


def _icc_by_class_table(frame: pd.DataFrame) -> str:
    """ICC summary by feature class (``evaluation.icc.summarize_by_class``): CT reproducibility and MRI stability."""
    return table(frame, ("class", "n_features", "n_defined", "min", "median", "max"), labels={"n_defined": "ICC defined"})


def icc_section(layout: RunLayout) -> Section:
    section = Section("icc", "Radiomics reproducibility (ICC by feature class)")
    folder = layout.ct_icc
    _, frame = _first_table(folder, "*_by_class.csv")
    plots = sorted(folder.rglob("*_by_class.png")) if folder.is_dir() else []
    if frame is None and not plots:
        section.note = "no ct/icc/*_by_class.csv or .png (osteomet ct icc)"
        return section
    parts = [_figures([(p, "ICC per feature by class") for p in plots[:2]], width=640)]
    if frame is not None:
        parts.append(_icc_by_class_table(frame))
    section.body = "".join(parts)
    return section


def rigour_section(layout: RunLayout) -> Section:
    """Feature stability (ICC by class, features kept) and ComBat's effect per centre (``run mri``'s rigour stages)."""
    section = Section("rigour", "Radiomics stability and harmonization across centres")
    by_class = read_csv(layout.stability / "icc_by_class.csv")
    kept = read_csv(layout.model_features / "stability_filter.csv")
    effect = read_csv(layout.model_features / "harmonization_summary.csv")
    parts = []
    if by_class is not None:
        parts += ["<h3>Feature stability under one-voxel mask perturbation (training patients)</h3>",
                  _figures([(layout.stability / "icc_by_class.png", "Lowest ICC(2,1) per feature, by class")], 640),
                  _icc_by_class_table(by_class)]
    if kept is not None and "kept" in kept:
        parts.append(note(f"{int(kept['kept'].sum())} of {len(kept)} features reach the ICC threshold and are "
                          f"offered to feature selection."))
    if effect is not None:
        parts += ["<h3>ComBat harmonization (reference: the training centre)</h3>",
                  table(effect, ("centre", "n_features", "smd_before", "smd_after", "sd_ratio_before", "sd_ratio_after"),
                        labels={"smd_before": "|SMD| before", "smd_after": "|SMD| after",
                                "sd_ratio_before": "SD ratio before", "sd_ratio_after": "SD ratio after"}),
                  note("Median over features of the absolute standardized mean difference from the reference centre "
                       "(in its SDs) and of the SD ratio (1 = same spread); no label is used by the fit.")]
    if not parts:
        section.note = "no stability/icc_by_class.csv or model_features/harmonization_summary.csv (run mri)"
        return section
    section.body = "".join(parts)
    return section


DETECTION_COLUMNS = ("architecture", "level", "split", "n", "n_positive", "threshold", "auc", "auc_low", "auc_high",
                     "recall", "recall_low", "recall_high", "specificity", "specificity_low", "specificity_high",
                     "precision", "f1")


def ct_detection_section(layout: RunLayout) -> Section:
    section = Section("ct-detection", "CT slice detection: model comparison")
    comparison, frame = _first_table(layout.ct_detection, "comparison.csv")
    if frame is None:
        section.note = "no ct/detection/comparison.csv (osteomet ct detect predict)"
        return section
    section.body = (_figures([(comparison.parent / "boxplot_patient_scores.png", "Patient scores by reference label")],
                             width=640) + table(frame, DETECTION_COLUMNS))
    return section


def ct_segmentation_section(layout: RunLayout) -> Section:
    section = Section("ct-segmentation", "CT lesion segmentation: model comparison")
    folder = layout.ct_segmentation
    summaries = [p for p in sorted(folder.rglob(SUMMARY)) if p.is_file()] if folder.is_dir() else []
    frame = next((f for p in summaries if (f := read_csv(p)) is not None and {"model", "metric"} <= set(f.columns)),
                 None)
    if frame is None:
        section.note = "no ct/segmentation/.../summary.csv (osteomet ct segment compare)"
        return section
    plots = sorted(folder.rglob("boxplot_*.png"))
    pairwise = [(p, read_csv(p)) for p in sorted(folder.rglob("pairwise_*.csv"))]
    parts = [_figures([(p, f"{p.stem[len('boxplot_'):]} by model") for p in plots], width=480),
             table(frame, ("model", "metric", "n", "n_undefined", "mean", "ci_low", "ci_high", "sd", "median", "q1", "q3"),
                   labels=CI)]
    for path, pair in pairwise:
        if pair is not None:
            parts.append(f"<h3>Paired tests, {path.stem[len('pairwise_'):]}</h3>"
                         + table(pair, ("model_a", "model_b", "n", "mean_diff", "t_p", "wilcoxon_p", "t_p_adj",
                                        "wilcoxon_p_adj", "p_adj", "method")))
    section.body = "".join(parts)
    return section


# ---- the run ------------------------------------------------------------------------------------------

def run_section(layout: RunLayout) -> Section:
    section = Section("run", "Versions, seeds, settings and timings")
    run = layout.root
    rows = timings(run)
    record = read_json(run / "run.json")
    if not rows and record is None:
        section.note = "no stage.json in any stage folder and no run.json"
        return section
    parts = ["<h3>Package versions</h3>" + key_values(sorted(versions(run).items())),
             "<h3>Seeds</h3>" + key_values(seeds(run))]
    if rows:
        frame = pd.DataFrame(rows)
        total = pd.to_numeric(frame["seconds"], errors="coerce").sum()
        parts.append("<h3>Stage timings</h3>" + table(frame, ("folder", "stage", "status", "started", "finished",
                                                               "seconds"))
                     + note(f"Total over the stages: {total:.1f} s."))
    if record is not None:
        parts.append("<details><summary>run.json</summary>" + key_values(list(flatten(record, run))[:400])
                     + "</details>")
    parts.append("<h3>Settings per stage</h3>")
    for folder in settings_folders(run):
        settings = read_settings(folder)
        if settings:
            parts.append(f"<details><summary>{esc(folder.relative_to(run))}</summary>"
                         + key_values(list(flatten(settings, run))[:400]) + "</details>")
    kind = run_kind(run)
    if kind:
        parts.insert(0, note(f"Run kind: {kind}."))
    section.body = "".join(parts)
    return section


#: The report's sections in page order.
SECTIONS: tuple[Callable[[RunLayout], Section], ...] = (
    cohort_section, roc_section, delong_section, calibration_section, grid_section, gradcam_section,
    segmentation_section, rigour_section, ct_lesions_section, ct_sensitivity_section, icc_section, ct_detection_section,
    ct_segmentation_section, run_section,
)
