"""Report sections of the CT study: lesions per patient and bone, sensitivity by bone group, model comparisons.

A section whose files the run did not produce comes back without a body and with a note
saying which files were looked for, so the page leaves it out instead of showing it broken.
"""

from __future__ import annotations

from osteomet.layout import COMPARISON, LESIONS, METRICS, PATIENTS, REFERENCE_LESIONS, SUMMARY, RunLayout
from osteomet.report.html import CI_LABELS, Section, esc, figure, table
from osteomet.report.run_files import first_table, png_figures, read_csv

LESION_COLUMNS = ("patient_id", "lesion_id", "volume_ml", "n_slices", "bone_name", "bone_group", "weight_bearing",
                  "kind", "cluster_id", "mean_hu", "true_positive", "false_positive", "iou")
PATIENT_COLUMNS = ("patient_id", "n_lesions", "total_volume_ml", "n_clusters", "n_diffuse", "n_focal",
                   "n_weight_bearing", "n_reference", "n_detected", "n_false_positive")


def _titled(name: str, several: bool) -> str:
    return f" ({name})" if several else ""


def ct_lesions_section(layout: RunLayout) -> Section:
    section = Section("ct-lesions", "CT lesions")
    folders = layout.ct_lesion_folders()
    parts = []
    for name, folder in folders.items():
        lesions, patients, metrics = (read_csv(folder / n) for n in (LESIONS, PATIENTS, METRICS))
        suffix = _titled(name, len(folders) > 1)
        if metrics is not None:
            parts.append(f"<h3>Lesion-, bone- and patient-level statistics{esc(suffix)}</h3>"
                         + table(metrics, ("metric", "breakdown", "subgroup", "estimate", "ci_low", "ci_high",
                                           "numerator", "denominator", "n_patients", "ci_method"), labels=CI_LABELS))
        if patients is not None:
            parts.append(f"<h3>Per patient{esc(suffix)}</h3>" + table(patients, PATIENT_COLUMNS, max_rows=50))
        if lesions is not None:
            parts.append(f"<h3>Lesions{esc(suffix)}</h3>" + table(lesions, LESION_COLUMNS, max_rows=50))
    if not parts:
        section.note = "no ct/lesions/lesions.csv (osteomet ct lesions-cohort) or ct/lesions/<segmenter>/ (run ct)"
        return section
    section.body = "".join(parts)
    return section


def ct_sensitivity_section(layout: RunLayout) -> Section:
    from osteomet.report.charts import bone_group_sensitivity, sensitivity_figure
    from osteomet.utils.figures import png_bytes

    section = Section("ct-sensitivity", "Lesion sensitivity by bone group")
    folders = layout.ct_lesion_folders()
    parts = []
    for name, folder in folders.items():
        reference = read_csv(folder / REFERENCE_LESIONS)
        if reference is None or not {"detected", "bone_group"} <= set(reference.columns) or reference.empty:
            continue
        rates = bone_group_sensitivity(reference)
        suffix = _titled(name, len(folders) > 1)
        parts.append(figure(png_bytes(sensitivity_figure(rates)), f"Lesion sensitivity by bone group (Wilson 95% CI)"
                                                                  f"{suffix}")
                     + table(rates, ("bone_group", "detected", "lesions", "sensitivity", "ci_low", "ci_high"),
                             labels=CI_LABELS))
    if not parts:
        section.note = "no ct/lesions/reference_lesions.csv (needs predicted masks: ct lesions-cohort -p)"
        return section
    section.body = "".join(parts)
    return section


DETECTION_COLUMNS = ("architecture", "level", "split", "n", "n_positive", "threshold", "auc", "auc_low", "auc_high",
                     "recall", "recall_low", "recall_high", "specificity", "specificity_low", "specificity_high",
                     "precision", "f1")


def ct_detection_section(layout: RunLayout) -> Section:
    section = Section("ct-detection", "CT slice detection: model comparison")
    comparison, frame = first_table(layout.ct_detection, COMPARISON)
    if frame is None:
        section.note = "no ct/detection/comparison.csv (osteomet ct detect predict)"
        return section
    section.body = (png_figures([(comparison.parent / "boxplot_patient_scores.png",
                                  "Patient scores by reference label")], width=640) + table(frame, DETECTION_COLUMNS))
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
    parts = [png_figures([(p, f"{p.stem[len('boxplot_'):]} by model") for p in plots], width=480),
             table(frame, ("model", "metric", "n", "n_undefined", "mean", "ci_low", "ci_high", "sd", "median", "q1", "q3"),
                   labels=CI_LABELS)]
    for path, pair in pairwise:
        if pair is not None:
            parts.append(f"<h3>Paired tests, {path.stem[len('pairwise_'):]}</h3>"
                         + table(pair, ("model_a", "model_b", "n", "mean_diff", "t_p", "wilcoxon_p", "t_p_adj",
                                        "wilcoxon_p_adj", "p_adj", "method")))
    section.body = "".join(parts)
    return section
