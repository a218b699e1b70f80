"""Radiomics reproducibility: ICC between features from predicted and manual masks, by feature class.

A segmentation model is only a drop-in replacement for manual contouring if the radiomics
features computed from its masks agree with those from the manual masks. For each feature
the two values per case form an ``n_cases x 2`` rating matrix; the ICC and its F-based 95%
CI come from :func:`osteomet.evaluation.icc.feature_icc` (ICC(2,1), two-way random,
absolute agreement, by default; ICC(3,1), two-way mixed, consistency, as an option; both
match ``psych::ICC``). Cases with a missing value for a feature are left out of that
feature only; a feature constant over cases has an undefined ICC (NaN).

Input tables: CSV or Parquet, one row per case, an id column ``case_id`` (``patient_id``
is accepted, as ``osteomet radiomics extract`` writes it) and one column per feature named
as pyradiomics names it, ``<image type>_<class>_<Feature>`` with an optional prefix
(``original_glcm_Contrast``, ``wavelet-LLH_gldm_...``, ``ct_original_firstorder_Mean``).
The class is the name part in :data:`CLASSES` (``shape2D`` counts as ``shape``).
Columns ``error`` and ``diagnostics_*`` (pyradiomics' own metadata) are ignored.

Problems are reported, never papered over: a case in one table only, a feature in one table
only, a duplicated case id or a non-numeric feature column raises
:class:`FeatureTableError` naming the file, the column and the cases; numeric columns that
are not pyradiomics feature names are left out with a note.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from osteomet.errors import InputError
from osteomet.evaluation.icc import summarize_by_class
from osteomet.radiomics.features import FeatureTableError, read_feature_table
from osteomet.stage import refuse_overwriting_inputs
from osteomet.utils.figures import pyplot, save_figure
from osteomet.utils.files import write_text_atomic

PathLike = str | os.PathLike[str]

#: Feature classes of the summary, in report order.
CLASSES: tuple[str, ...] = ("firstorder", "shape", "glcm", "gldm", "glrlm", "glszm", "ngtdm")
CLASS_LABELS = {"firstorder": "First order", "shape": "Shape", "glcm": "GLCM", "gldm": "GLDM", "glrlm": "GLRLM",
                "glszm": "GLSZM", "ngtdm": "NGTDM"}
ICC_MODELS = ("2,1", "3,1")
IGNORED_COLUMNS = ("error",)
OUTPUT_COLUMNS = ["feature", "class", "icc", "ci_low", "ci_high", "n_cases"]


def feature_class(name: str) -> str | None:
    """pyradiomics class of a feature column (``wavelet-LLH_glcm_Contrast`` -> ``glcm``), None if not a feature."""
    from osteomet.evaluation.icc import feature_class as evaluation_feature_class

    cls = evaluation_feature_class(name)
    cls = "shape" if cls == "shape2D" else cls
    return cls if cls in CLASSES else None


def _read_indexed(path: PathLike) -> pd.DataFrame:
    """A feature table indexed by case id (:func:`osteomet.radiomics.features.read_feature_table`)."""
    return read_feature_table(path).set_index("patient_id").rename_axis("case_id")


def _feature_columns(table: pd.DataFrame, path: PathLike, notes: list[str]) -> pd.DataFrame:
    """The numeric pyradiomics feature columns; raises for a non-numeric one."""
    keep, unknown = [], []
    for column in table.columns:
        name = str(column)
        if name in IGNORED_COLUMNS or name.startswith("diagnostics_"):
            continue
        values = table[column]
        if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values)):
            converted = pd.to_numeric(values, errors="coerce")
            bad = values[converted.isna() & values.notna()]
            if len(bad):
                cases = ", ".join(f"{case}={value!r}" for case, value in list(bad.items())[:3])
                raise FeatureTableError(f"{path}: feature column {name!r} is not numeric ({cases})")
            table = table.assign(**{name: converted})
        if feature_class(name) is None:
            unknown.append(name)
            continue
        keep.append(name)
    if unknown:
        notes.append(f"{path}: {len(unknown)} numeric column(s) are not pyradiomics feature names and were left "
                     f"out: {', '.join(unknown[:6])}" + (" ..." if len(unknown) > 6 else ""))
    if not keep:
        raise FeatureTableError(f"{path}: no pyradiomics feature columns (expected names like original_glcm_Contrast)")
    return table[keep].astype(float)


@dataclass
class ICCReport:
    """Per-feature ICCs, the per-class summary and the notes to show the user."""

    per_feature: pd.DataFrame
    by_class: pd.DataFrame
    model: str
    n_cases: int
    notes: list[str] = field(default_factory=list)


def feature_table_icc(manual: pd.DataFrame, predicted: pd.DataFrame, *, model: str = "2,1",
                      names: tuple[str, str] = ("manual", "predicted"), level: float = 0.95) -> ICCReport:
    """ICC per feature between two tables indexed by case id (see module docstring for the checks)."""
    from osteomet.evaluation.icc import feature_icc

    if model not in ICC_MODELS:
        raise InputError(f"unknown ICC model {model!r}; use 2,1 (absolute agreement) or 3,1 (consistency)")
    notes: list[str] = []
    a = _feature_columns(manual, names[0], notes)
    b = _feature_columns(predicted, names[1], notes)
    only_a = sorted(set(a.index) - set(b.index))
    only_b = sorted(set(b.index) - set(a.index))
    if only_a or only_b:
        parts = []
        if only_a:
            parts.append(f"in {names[0]} only: {', '.join(only_a[:10])}" + (" ..." if len(only_a) > 10 else ""))
        if only_b:
            parts.append(f"in {names[1]} only: {', '.join(only_b[:10])}" + (" ..." if len(only_b) > 10 else ""))
        raise FeatureTableError("case_id values do not match between the tables (" + "; ".join(parts) + ")")
    cols_a, cols_b = set(a.columns), set(b.columns)
    if cols_a != cols_b:
        parts = []
        for where, cols in ((names[0], cols_a - cols_b), (names[1], cols_b - cols_a)):
            if cols:
                parts.append(f"in {where} only: {', '.join(sorted(cols)[:6])}" + (" ..." if len(cols) > 6 else ""))
        raise FeatureTableError("feature columns differ between the tables (" + "; ".join(parts)
                                + "); were they extracted with the same settings?")
    if len(a) < 2:
        raise FeatureTableError(f"the ICC needs at least 2 cases; the tables have {len(a)}")
    order = list(a.columns)
    result = feature_icc(a[order], b.loc[a.index, order], model=model, level=level)
    per_feature = pd.DataFrame({
        "feature": result["feature"], "class": [feature_class(f) for f in result["feature"]],
        "icc": result["icc"], "ci_low": result["ci_low"], "ci_high": result["ci_high"], "n_cases": result["n"],
    }, columns=OUTPUT_COLUMNS)
    undefined = per_feature["icc"].isna().sum()
    if undefined:
        notes.append(f"{undefined} feature(s) have an undefined ICC (constant over cases or fewer than 2 complete "
                     f"cases): {', '.join(per_feature.loc[per_feature['icc'].isna(), 'feature'].head(5))}")
    return ICCReport(per_feature, summarize_by_class(per_feature, class_column="class", order=CLASSES), model, len(a), notes)


def plot_icc_by_class(per_feature: pd.DataFrame, path: PathLike, *, title: str | None = None) -> Path:
    """Box plot of the per-feature ICC by class (points overlaid), written atomically as PNG."""
    plt = pyplot()

    classes = [c for c in CLASSES if (per_feature["class"] == c).any()]
    data = [per_feature.loc[per_feature["class"] == c, "icc"].dropna().to_numpy() for c in classes]
    fig, ax = plt.subplots(figsize=(1.1 * max(len(classes), 3) + 1.5, 4.0), dpi=150)
    try:
        ax.boxplot(data, showfliers=False, widths=0.6)
        ax.set_xticks(range(1, len(classes) + 1), [CLASS_LABELS[c] for c in classes])
        rng = np.random.default_rng(0)
        for i, values in enumerate(data, start=1):
            ax.scatter(i + rng.uniform(-0.15, 0.15, values.size), values, s=8, alpha=0.6, color="tab:blue")
        ax.axhline(0.9, color="grey", lw=0.8, ls="--")
        ax.axhline(0.75, color="grey", lw=0.8, ls=":")
        ax.set_ylabel("ICC")
        ax.set_ylim(min(-0.05, min((v.min() for v in data if v.size), default=0.0) - 0.05), 1.02)
        ax.set_title(title or "Radiomics reproducibility: predicted vs manual mask")
    except BaseException:
        plt.close(fig)
        raise
    return save_figure(fig, path)


def run_icc(manual_path: PathLike, predicted_path: PathLike, out: PathLike, *, model: str = "2,1",
            plot: PathLike | None = None, summary: PathLike | None = None) -> tuple[ICCReport, dict[str, Path]]:
    """Read both tables, compute the ICCs, write OUT (CSV), its class summary CSV and the box plot PNG."""
    out = Path(out)
    summary = Path(summary) if summary else out.with_name(out.stem + "_by_class.csv")
    plot = Path(plot) if plot else out.with_name(out.stem + "_by_class.png")
    refuse_overwriting_inputs([out, summary, plot], [manual_path, predicted_path])
    report = feature_table_icc(_read_indexed(manual_path), _read_indexed(predicted_path), model=model,
                               names=(str(manual_path), str(predicted_path)))
    write_text_atomic(out, report.per_feature.to_csv(index=False))
    write_text_atomic(summary, report.by_class.to_csv(index=False))
    plot_icc_by_class(report.per_feature, plot, title=f"ICC({model}) predicted vs manual, {report.n_cases} cases")
    return report, {"icc": out, "summary": summary, "plot": plot}
