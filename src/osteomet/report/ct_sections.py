"""Report sections of the CT study: lesions per patient and bone, sensitivity by bone group, model comparisons.

Pictures: test patients' reference and predicted lesions on the same slices and a bone map of found
and missed lesions (:mod:`osteomet.ct.lesions.figures`), and each detector's Grad-CAM beside its slice.

A section whose files the run did not produce comes back without a body and with a note
saying which files were looked for, so the page leaves it out instead of showing it broken.
"""

from __future__ import annotations

from pathlib import Path

from osteomet.layout import (
    COMPARISON,
    GRADCAM_LOCALISATION,
    INDEX,
    LESIONS,
    METRICS,
    PATIENTS,
    REFERENCE_LESIONS,
    SUMMARY,
    RunLayout,
)
from osteomet.report.html import CI_LABELS, Section, esc, figure, fmt, note, table
from osteomet.report.run_files import first_table, png_figures, read_csv, safe_id

LESION_COLUMNS = ("patient_id", "lesion_id", "volume_ml", "n_slices", "bone_name", "bone_group", "weight_bearing",
                  "kind", "cluster_id", "mean_hu", "true_positive", "false_positive", "iou")
PATIENT_COLUMNS = ("patient_id", "n_lesions", "total_volume_ml", "n_clusters", "n_diffuse", "n_focal",
                   "n_weight_bearing", "n_reference", "n_detected", "n_false_positive")


def _titled(name: str, several: bool) -> str:
    return f" ({name})" if several else ""


def lesion_pictures(layout: RunLayout) -> str:
    """The cohort's lesion figures: those ``ct/lesions/figures/`` holds, else drawn here from the run's images
    and tables (:mod:`osteomet.ct.lesions.figures`; a few held-out patients, nothing re-run)."""
    from osteomet.ct.lesions.figures import BONE_COUNTS, FIGURE_INDEX, FIGURES, group_table, lesion_figures
    from osteomet.utils.figures import png_bytes
    from osteomet.utils.files import read_json

    folder = layout.ct_lesions / FIGURES
    saved = sorted(folder.glob("*.png")) if folder.is_dir() else []
    if saved:
        entries = (read_json(folder / FIGURE_INDEX) or {}).get("figures")
        captions = {str(e.get("file")): str(e.get("caption")) for e in entries if isinstance(e, dict)} \
            if isinstance(entries, list) else {}
        images = png_figures([(p, captions.get(p.name) or _caption(p)) for p in saved])
        counts = read_csv(folder / BONE_COUNTS)
    else:
        try:
            drawn = lesion_figures(layout)
        except Exception as exc:  # noqa: BLE001 (a broken image file leaves the pictures out, not the report)
            return note(f"No lesion pictures: {exc}")
        if drawn is None:
            return ""
        images = "".join(figure(png_bytes(fig), caption) for caption, fig in drawn.figures)
        counts = drawn.counts
    if not images:
        return ""
    parts = ["<h3>Held-out patients: reference and predicted lesions</h3>",
             note("Bone window (level 400, width 1800 HU), patient right on the image left. Green: predicted lesion "
                  "matched to a reference lesion (true positive); red: false positive; yellow: reference lesion "
                  "missed; cyan: reference lesion (dashed where the segmenter found it). The coronal locator marks "
                  "each row's slice."), images]
    if counts is not None and not counts.empty:
        parts.append("<h4>Lesions by bone group, held-out patients</h4>"
                     + table(group_table(counts), ("segmenter", "bone_group", "reference", "found", "missed",
                                                   "false_positive"),
                             labels={"reference": "reference lesions", "false_positive": "false positives"}))
    return "".join(parts)


def _caption(path: Path) -> str:
    """A saved figure's caption from its file name (``03_test_patient_ct009_....png``)."""
    words = path.stem.split("_", 1)[-1].replace("_", " ")
    return words[:1].upper() + words[1:]


def ct_lesions_section(layout: RunLayout) -> Section:
    section = Section("ct-lesions", "CT lesions")
    folders = layout.ct_lesion_folders()
    parts = [pictures] if (pictures := lesion_pictures(layout)) else []
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


#: Grad-CAM overlays shown per detector and kind (true / false positives), most confident first.
GRADCAM_SHOWN = 2


def detection_gradcam(layout: RunLayout) -> str:
    """Each detector's Grad-CAM overlays (slice | tile | map, as :mod:`osteomet.ct.detection.gradcam` saves them)
    of its most confident true and false positives, with how often the map's peak lies on the lesion."""
    from osteomet.utils.files import read_json

    predictions = layout.ct_detection / "predictions"
    parts = []
    for index in sorted(predictions.glob(f"*/gradcam/{INDEX}")) if predictions.is_dir() else []:
        architecture, folder = index.parent.parent.name, index.parent
        frame = read_csv(index)
        if frame is None or not {"kind", "patient_id", "slice", "probability"} <= set(frame.columns):
            continue
        shown = []
        for kind in ("true_positive", "false_positive"):
            rows = frame[frame["kind"] == kind].sort_values("probability", ascending=False)
            found = 0
            for row in rows.itertuples():
                pid = str(row.patient_id)
                # the file is found by the name the writer gives it: the table's png column holds the path as
                # it was written, which moves with the run folder
                path = folder / kind / f"{pid}_slice{int(row.slice):04d}.png"
                if not safe_id(pid) or not path.is_file():
                    continue
                shown.append((path, f"{architecture}, {kind.replace('_', ' ')}: patient {pid}, slice {int(row.slice)}, "
                                    f"score {float(row.probability):.2f}"))
                found += 1
                if found == GRADCAM_SHOWN:
                    break
        images = png_figures(shown, width=900)
        if not images:
            continue
        summary = read_json(folder / GRADCAM_LOCALISATION) or {}
        text = ""
        if summary.get("true_positives"):
            text = (f" The map's peak lies within {fmt(summary.get('within_mm'))} mm of the lesion on "
                    f"{fmt(summary.get('within'))} of {fmt(summary.get('true_positives'))} true-positive test slices.")
        parts.append(f"<h3>Grad-CAM, {esc(architecture)}</h3>"
                     + note("Most confident true and false positive test slices: the axial slice with the tile that "
                            "decided its score, the tile as the network saw it, and the Grad-CAM map on the tile "
                            "(reference lesion outlined in green)." + text) + images)
    return "".join(parts)


def ct_detection_section(layout: RunLayout) -> Section:
    section = Section("ct-detection", "CT slice detection: model comparison")
    comparison, frame = first_table(layout.ct_detection, COMPARISON)
    gradcam = detection_gradcam(layout)
    if frame is None and not gradcam:
        section.note = "no ct/detection/comparison.csv (osteomet ct detect predict)"
        return section
    parts = []
    if frame is not None and comparison is not None:
        parts += [png_figures([(comparison.parent / "boxplot_patient_scores.png", "Patient scores by reference label")],
                              width=640), table(frame, DETECTION_COLUMNS)]
    section.body = "".join(parts) + gradcam
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
