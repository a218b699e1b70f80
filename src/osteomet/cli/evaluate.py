"""``osteomet evaluate``: metrics with CIs, DeLong comparisons, ROC figures, cohort table."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from osteomet.cli._common import console, user_errors

app = typer.Typer(help="Statistics: AUC with DeLong/bootstrap CIs, DeLong tests, ROC curves, cohort table.",
                  no_args_is_help=True)


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
        from osteomet.pipeline.evaluate import evaluate_prediction_files

        _, metrics = evaluate_prediction_files(files, out, manifest=manifest, names=names,
                                               threshold_split=threshold_split, n_resamples=n_resamples, seed=seed)
    aucs = metrics[(metrics["metric"] == "auc") & (metrics["ci_method"] == "delong")]
    for row in aucs.itertuples(index=False):
        console.print(f"  {row.model:16s} {row.cohort:9s} n={row.n:4d}  AUC {row.estimate:.3f} "
                      f"(95% CI {row.ci_low:.3f}-{row.ci_high:.3f})")
    console.print(f"metrics and ROC figure(s) in [bold]{out}[/]")


@app.command("cohort")
def cohort(
    manifest: Path = typer.Option(..., "--manifest", "-m", help="bpMRI manifest with label and clinical columns."),
    out: Path = typer.Option(..., "--out", "-o", help="CSV file for the characteristics table."),
) -> None:
    """Cohort characteristics by BM status: tests (t / Mann-Whitney, chi-square / Fisher), BH p, odds ratios."""
    with user_errors():
        from osteomet.pipeline.evaluate import write_cohort_table

        table, notes = write_cohort_table(manifest, out)
    for note in notes:
        console.print(f"[yellow]note[/]: {note}")
    shown = table[["variable", "level", "label=0", "label=1", "p", "p_adj"]].fillna("")
    console.print(shown.to_string(index=False))
    console.print(f"table -> [bold]{out}[/]")
