"""Report sections of the radiomics rigour: feature reproducibility (CT ICC), stability and ComBat harmonization.

A section whose files the run did not produce comes back without a body and with a note
saying which files were looked for, so the page leaves it out instead of showing it broken.
"""

from __future__ import annotations

import pandas as pd

from osteomet.layout import HARMONIZATION_SUMMARY, ICC_BY_CLASS, STABILITY_FILTER, RunLayout
from osteomet.report.html import Section, note, table
from osteomet.report.run_files import first_table, png_figures, read_csv


def _icc_by_class_table(frame: pd.DataFrame) -> str:
    """ICC summary by feature class (``evaluation.icc.summarize_by_class``): CT reproducibility and MRI stability."""
    return table(frame, ("class", "n_features", "n_defined", "min", "median", "max"), labels={"n_defined": "ICC defined"})


def icc_section(layout: RunLayout) -> Section:
    section = Section("icc", "Radiomics reproducibility (ICC by feature class)")
    folder = layout.ct_icc
    _, frame = first_table(folder, "*_by_class.csv")
    plots = sorted(folder.rglob("*_by_class.png")) if folder.is_dir() else []
    if frame is None and not plots:
        section.note = "no ct/icc/*_by_class.csv or .png (osteomet ct icc)"
        return section
    parts = [png_figures([(p, "ICC per feature by class") for p in plots[:2]], width=640)]
    if frame is not None:
        parts.append(_icc_by_class_table(frame))
    section.body = "".join(parts)
    return section


def rigour_section(layout: RunLayout) -> Section:
    """Feature stability (ICC by class, features kept) and ComBat's effect per centre (``run mri``'s rigour stages)."""
    section = Section("rigour", "Radiomics stability and harmonization across centres")
    by_class = read_csv(layout.stability / ICC_BY_CLASS)
    kept = read_csv(layout.model_features / STABILITY_FILTER)
    effect = read_csv(layout.model_features / HARMONIZATION_SUMMARY)
    parts = []
    if by_class is not None:
        parts += ["<h3>Feature stability under one-voxel mask perturbation (training patients)</h3>",
                  png_figures([(layout.stability / "icc_by_class.png", "Lowest ICC(2,1) per feature, by class")], 640),
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
