"""``osteomet evaluate``: metrics with CIs, DeLong comparisons, ROC figures, cohort table."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from osteomet.cli._common import console, user_errors

app = typer.Typer(help="Statistics: AUC with DeLong/bootstrap CIs, DeLong tests, ROC curves, cohort table.",
                  no_args_is_help=True)


def _threshold_split(value: Optional[str]) -> Optional[str]:
    """Refuse a misspelt --threshold-split before any table is read (exit 2, with the allowed values)."""
    if value is None:
        return None
    from osteomet.evaluation.predictions import threshold_split_problem

    problem = threshold_split_problem(value)
    if problem:
        raise typer.BadParameter(problem)
    return value


@app.command("predictions")
def predictions(
    files: List[Path] = typer.Option(..., "--predictions", "-p", help="patient_id, prob[, label, split] CSV/Parquet; repeat for several models."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for metrics.csv, delong.csv and roc_<split>.png."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", "-m", help="Manifest supplying label and split."),
    names: Optional[List[str]] = typer.Option(None, "--name", help="Model names, one per --predictions."),
    threshold_split: Optional[str] = typer.Option(None, callback=_threshold_split, help="Split(s) the Youden threshold is chosen on, then applied to all: train+val (default), val+train, val or train."),
    n_resamples: int = typer.Option(1000, min=10, help="Bootstrap resamples."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
    scores: bool = typer.Option(False, "--scores", help="The prob column holds scores (any finite number, higher = bone metastasis: logits, ranks), not probabilities in [0, 1] (otherwise refused)."),
    allow_missing: bool = typer.Option(False, "--allow-missing", help="Leave out patients with an empty prob (otherwise refused); the count per model is printed and recorded in stage.json."),
    paired_subset: bool = typer.Option(False, "--paired-subset", help="Compare models that scored different patients on the patients both scored (otherwise refused); the counts go to delong.csv (n, n_a_only, n_b_only)."),
) -> None:
    """Each model on each split: AUC (DeLong CI), ACC/sens/spec/PPV/NPV/F1 (bootstrap CIs); paired DeLong tests."""
    with user_errors():
        from osteomet.pipeline.evaluate import evaluate_prediction_files

        outcome, metrics = evaluate_prediction_files(files, out, manifest=manifest, names=names,
                                                     threshold_split=threshold_split, n_resamples=n_resamples,
                                                     seed=seed, scores=scores, allow_missing=allow_missing,
                                                     paired_subset=paired_subset)
    from rich.markup import escape

    for model, count in outcome.summary.get("missing_probabilities", {}).items():
        console.print(f"[yellow]note[/]: {escape(model)}: {count} patient(s) with no probability left out (--allow-missing)",
                      highlight=False)
    for d in outcome.summary.get("paired_subset", []):
        console.print(f"[yellow]note[/]: {escape(d['model_a'])} vs {escape(d['model_b'])}: compared on the {d['both']} "
                      f"patient(s) both scored ({d['a_only']} in {escape(d['model_a'])} only, {d['b_only']} in "
                      f"{escape(d['model_b'])} only; --paired-subset)", highlight=False)
    aucs = metrics[(metrics["metric"] == "auc") & (metrics["ci_method"] == "delong")]
    for row in aucs.itertuples(index=False):
        console.print(f"  {row.model:16s} {row.cohort:9s} n={row.n:4d}  AUC {row.estimate:.3f} "
                      f"(95% CI {row.ci_low:.3f}-{row.ci_high:.3f})")
    from osteomet.evaluation.predictions import not_evaluated

    for line in not_evaluated(metrics):
        console.print(f"[yellow]note[/]: {line}", highlight=False)
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


@app.command("roc")
def roc(
    predictions: Path = typer.Argument(..., help="CSV/Parquet with a 0/1 truth column and one or two score columns."),
    truth: str = typer.Option(..., "--truth", help="Column with the truth: 1 = positive (bone metastasis), 0 = not."),
    scores: List[str] = typer.Option(..., "--score", help="Score column (higher = positive); give two to compare."),
    unpaired: bool = typer.Option(False, "--unpaired", help="Unpaired DeLong test (pROC's D, Welch df, t p-value)."),
    as_json: bool = typer.Option(False, "--json", help="Write only JSON to stdout."),
    n_resamples: int = typer.Option(2000, min=10, help="Bootstrap resamples (stratified, percentile)."),
    seed: int = typer.Option(0, help="Bootstrap seed."),
) -> None:
    """AUC with DeLong and bootstrap CIs and the Youden threshold per score; with two scores, the DeLong test (pROC)."""
    with user_errors():
        from osteomet.pipeline.evaluate import roc_from_file

        result = roc_from_file(predictions, truth, scores, paired=not unpaired, n_resamples=n_resamples, seed=seed)
    if as_json:
        import json

        typer.echo(json.dumps(result))
        return
    from rich.table import Table

    table = Table(title=f"ROC: {predictions.name} (truth {truth!r}, n={next(iter(result['scores'].values()))['n']})")
    for column in ("score", "AUC", "95% CI DeLong", "95% CI bootstrap", "Youden threshold"):
        table.add_column(column)
    for name, row in result["scores"].items():
        table.add_row(name, f"{row['auc']:.4f}", "{:.4f}-{:.4f}".format(*row["ci_delong"]),
                      "{:.4f}-{:.4f}".format(*row["ci_bootstrap"]), f"{row['threshold']:.6g}")
    console.print(table)
    if "test" in result:
        test = result["test"]
        kind = "paired Z" if test["paired"] else f"unpaired D (df {test['df']:.1f})"
        console.print(f"DeLong test, {kind} = {test['z']:.4f}, p = {test['p']:.4g}")


@app.command("segmentation")
def segmentation(
    pred: Path = typer.Option(..., "--pred", help="Folder of predicted masks (NIfTI/MHA/NRRD)."),
    truth: Path = typer.Option(..., "--truth", help="Folder of reference masks with the same file names."),
    out: Path = typer.Option(..., "--out", "-o", help="CSV of per-case Dice, precision, recall, HD95 (mm)."),
) -> None:
    """Per-case Dice, precision, recall and 95th-percentile Hausdorff distance; geometry checked like the loader."""
    with user_errors():
        from osteomet.pipeline.evaluate import evaluate_segmentation_folders

        table = evaluate_segmentation_folders(pred, truth, out)
    means = table[["dice", "precision", "recall", "hd95_mm"]].mean(skipna=True)
    console.print(f"{len(table)} cases: mean Dice {means['dice']:.3f}, precision {means['precision']:.3f}, "
                  f"recall {means['recall']:.3f}, HD95 {means['hd95_mm']:.2f} mm "
                  f"({int(table['hd95_mm'].notna().sum())} cases with both masks non-empty) -> [bold]{out}[/]")
