"""``osteomet evaluate``: metrics with CIs, DeLong comparisons, ROC figures, cohort table."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from osteomet.cli._common import console, user_errors
from osteomet.errors import InputError

app = typer.Typer(help="Statistics: AUC with DeLong/bootstrap CIs, DeLong tests, ROC curves, cohort table.",
                  no_args_is_help=True)


def _model_name(path: Path, taken: set[str]) -> str:
    name = path.stem if path.stem not in ("predictions", "pred") else path.parent.name or path.stem
    while name in taken:
        name += "_"
    return name


@app.command("predictions")
def predictions(
    files: List[Path] = typer.Option(..., "--predictions", "-p", help="patient_id, prob[, label, split] CSV/Parquet; repeat for several models."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for metrics.csv, delong.csv and roc_<split>.png."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", "-m", help="Manifest supplying label and split."),
    names: Optional[List[str]] = typer.Option(None, "--name", help="Model names, one per --predictions."),
    threshold_split: Optional[str] = typer.Option(None, help="Split(s) the Youden threshold is chosen on, then applied to all ('train+val' by default, or 'val', 'train')."),
    n_resamples: int = typer.Option(1000, min=10, help="Bootstrap resamples."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
) -> None:
    """Each model on each split: AUC (DeLong CI), ACC/sens/spec/PPV/NPV/F1 (bootstrap CIs); paired DeLong tests."""
    with user_errors():
        from osteomet.data.manifest import read_manifest
        from osteomet.evaluation.plots import plot_roc
        from osteomet.evaluation.predictions import (
            compare_predictions,
            evaluate_predictions,
            not_evaluated,
            read_predictions,
        )
        from osteomet.utils.files import write_text_atomic

        if names and len(names) != len(files):
            raise InputError(f"{len(names)} --name value(s) for {len(files)} --predictions file(s)")
        cohort = read_manifest(manifest, require=("label",)).to_frame() if manifest else None
        models: dict = {}
        for i, path in enumerate(files):
            models[names[i] if names else _model_name(path, set(models))] = read_predictions(path, cohort)
        metrics = evaluate_predictions(models, threshold_split=threshold_split, n_resamples=n_resamples, seed=seed)
        write_text_atomic(out / "metrics.csv", metrics.to_csv(index=False))
        if len(models) > 1:
            write_text_atomic(out / "delong.csv", compare_predictions(models).to_csv(index=False))
        evaluated = metrics.loc[metrics["ci_method"] != "none", "cohort"].unique()  # one-class splits: no curve
        figures = [plot_roc(models, split, out / f"roc_{split}.png") for split in evaluated]
    aucs = metrics[(metrics["metric"] == "auc") & (metrics["ci_method"] == "delong")]
    for row in aucs.itertuples(index=False):
        console.print(f"  {row.model:16s} {row.cohort:9s} n={row.n:4d}  AUC {row.estimate:.3f} "
                      f"(95% CI {row.ci_low:.3f}-{row.ci_high:.3f})")
    for line in not_evaluated(metrics):
        console.print(f"[yellow]note[/]: {line}", highlight=False)
    console.print(f"metrics, {len(figures)} ROC figure(s) in [bold]{out}[/]")


@app.command("cohort")
def cohort(
    manifest: Path = typer.Option(..., "--manifest", "-m", help="bpMRI manifest with label and clinical columns."),
    out: Path = typer.Option(..., "--out", "-o", help="CSV file for the characteristics table."),
) -> None:
    """Cohort characteristics by BM status: tests (t / Mann-Whitney, chi-square / Fisher), BH p, odds ratios."""
    with user_errors():
        import warnings

        from osteomet.data.manifest import read_manifest
        from osteomet.evaluation.clinical_table import study_characteristics
        from osteomet.evaluation.cohort import write_characteristics_csv

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            table = study_characteristics(read_manifest(manifest, check_files=False).to_frame())
        write_characteristics_csv(table, out)
    for warning in {str(w.message) for w in caught if "osteomet" in str(w.filename) or "fit" in str(w.message)}:
        console.print(f"[yellow]note[/]: {warning}")
    shown = table[["variable", "level", "label=0", "label=1", "p", "p_adj"]].fillna("")
    console.print(shown.to_string(index=False))
    console.print(f"table -> [bold]{out}[/]")
