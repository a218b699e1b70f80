"""Report sections of the MRI deep learning: the classifier's grid search, Grad-CAM maps, tumour segmentation.

A section whose files the run did not produce comes back without a body and with a note
saying which files were looked for, so the page leaves it out instead of showing it broken.
"""

from __future__ import annotations

import pandas as pd

from osteomet.layout import AUTO_DIR, GRADCAM_TABLE, GRID_TABLE, INDEX, MASK_SUFFIX, METRICS, SUMMARY, WINNER, RunLayout
from osteomet.report.html import CI_LABELS, Section, figure, key_values, note, table
from osteomet.report.run_files import first_table, png_figures, read_csv, safe_id
from osteomet.utils.files import read_json

#: How many patients the image sections show.
N_PATIENTS = 3


GRID_COLUMNS = ("name", "depth", "optimizer", "learning_rate", "val_auc", "val_auc_low", "val_auc_high", "val_acc",
                "val_score", "n_val", "n_val_positive", "best_epoch", "epochs_run", "stopped_early", "seconds")


def grid_section(layout: RunLayout) -> Section:
    section = Section("grid", "Deep-learning grid search")
    grid, frame = first_table(layout.deep, GRID_TABLE)
    if frame is None:
        section.note = "no deep/.../grid.csv (osteomet deep grid)"
        return section
    parts = [png_figures([(grid.parent / "heatmap.png", "Selection score (validation AUC, smoothed over epochs when "
                                                         "the settings say so) by depth, learning rate and optimiser")],
                         width=640)]
    winner = read_json(grid.parent / WINNER)
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
    index, frame = first_table(layout.deep, GRADCAM_TABLE)
    if frame is None or "patient_id" not in frame:
        section.note = "no deep/.../gradcam.csv (osteomet deep gradcam)"
        return section
    shown = [pid for pid in frame["patient_id"].astype(str) if safe_id(pid)][:N_PATIENTS]
    images = png_figures([(index.parent / "png" / f"{pid}.png", f"Grad-CAM, patient {pid}") for pid in shown])
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
        return png_figures([(p, f"Segmentation, patient {p.stem}") for p in saved[:N_PATIENTS]])
    if metrics is None or "patient_id" not in metrics or not (layout.preprocess / INDEX).is_file():
        return ""
    from osteomet.mri.segmentation.overlay import overlay_figure
    from osteomet.utils.figures import png_bytes

    held_out = metrics[metrics["split"].isin(["test", "external"])] if "split" in metrics else metrics.iloc[:0]
    ids = [pid for pid in (held_out if len(held_out) else metrics)["patient_id"].astype(str) if safe_id(pid)]
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
                           labels={"split": "cohort", **CI_LABELS}))
    overlays = _overlays(layout, metrics)
    parts.append(overlays or note("No overlay: neither segmentation/masks/overlays/*.png nor the preprocessed "
                                  "images to draw one from."))
    if metrics is not None:
        parts.append("<details><summary>Per patient</summary>"
                     + table(metrics, ("patient_id", "split", "predicted_voxels", "dice", "precision", "recall"))
                     + "</details>")
    section.body = "".join(parts)
    return section
