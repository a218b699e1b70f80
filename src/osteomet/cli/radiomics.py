"""``osteomet radiomics``: extract (cached, parallel) and train/predict the XGBoost model."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from osteomet.cli._common import console, err_console, user_errors
from osteomet.utils.cores import resolve_jobs

app = typer.Typer(help="pyradiomics features (cached, parallel) and the XGBoost radiomics model.", no_args_is_help=True)


@app.command("extract")
def extract(
    manifest: Path = typer.Option(..., "--manifest", "-m", help="MRI or CT manifest."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for features.parquet/.csv and extraction_log.csv."),
    params: str = typer.Option(None, help="pyradiomics YAML file, or built-in 'mri', 'ct', 'tiny' (default: by modality)."),
    jobs: Optional[int] = typer.Option(None, min=1, help="Worker processes on this machine (a local Dask cluster; "
                                      "default: every core, or $OSTEOMET_JOBS)."),
    scheduler: Optional[str] = typer.Option(None, help="Address of a running Dask scheduler, e.g. tcp://10.0.0.5:8786."),
    cache: Optional[Path] = typer.Option(None, help="Feature cache folder (default: OUT/cache)."),
    segdir: Optional[Path] = typer.Option(None, help="Segmentation folder: use its reviewed (else auto) tumour masks."),
    masks: Optional[Path] = typer.Option(None, help="Folder of <patient_id>.nii.gz masks to use instead of the manifest's "
                                         "(e.g. predicted CT lesion masks, to compare with the manual ones by ICC)."),
) -> None:
    """Extract features per patient and sequence; cached by content hash, so a rerun extracts nothing new.

    Exit codes: 0 every patient extracted or cached; 3 one or more patients failed (the features of
    the others are written, the failures listed and in extraction_log.csv); 2 an input error;
    130 interrupted (Ctrl-C): the patients finished so far are cached, rerun the same command to resume.
    """
    with user_errors():
        from osteomet.pipeline.radiomics import extract_features
        from osteomet.radiomics.runner import ExtractionInterrupted

        try:
            outcome, result = extract_features(manifest, out, params=params, jobs=resolve_jobs(jobs), scheduler=scheduler,
                                               cache=cache, segdir=segdir, masks=masks)
        except ExtractionInterrupted as stop:
            err_console.print(str(stop), highlight=False, soft_wrap=True)
            raise typer.Exit(130) from None
    n_features = result.table.shape[1] - 2
    console.print(f"{len(result.log)} patients, {n_features} features: {result.n_extracted} extracted, "
                  f"{result.n_cached} from cache, {len(result.failures)} failed in {result.seconds:.1f} s -> "
                  f"{out / 'features.parquet'}" + (" (up to date)" if outcome.skipped else ""))
    if result.failures:
        err_console.print(f"[yellow]{result.failure_report()}[/]", highlight=False)
        raise typer.Exit(3)


@app.command("train")
def train(
    features: Path = typer.Option(..., "--features", "-f", help="features.parquet (or CSV) from `radiomics extract`."),
    manifest: Path = typer.Option(..., "--manifest", "-m", help="Manifest with label and split."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for model/ and predictions.csv."),
    train_split: str = typer.Option("train", help="Split used for selection and fitting."),
    max_features: int = typer.Option(20, min=1, help="Most features kept by the LASSO step."),
    seed: int = typer.Option(0, help="Seed of the cross-validation and XGBoost."),
) -> None:
    """Feature selection (variance, correlation, LASSO) on training patients only, then XGBoost."""
    with user_errors():
        from osteomet.evaluation.roc import auc
        from osteomet.pipeline.radiomics import train_radiomics_model

        outcome, predictions = train_radiomics_model(features, manifest, out, train_split=train_split,
                                                     max_features=max_features, seed=seed)
    selected = outcome.summary.get("features", [])
    console.print(f"selected {len(selected)} features: {', '.join(selected[:8])}" + (" ..." if len(selected) > 8 else ""))
    for split, group in predictions.dropna(subset=["prob", "label"]).groupby("split"):
        if group["label"].nunique() == 2:
            console.print(f"  {split:9s} n={len(group):4d}  AUC {auc(group['label'], group['prob']):.3f}")
    console.print(f"model and predictions in [bold]{out}[/]")


@app.command("predict")
def predict(
    model_dir: Path = typer.Option(..., "--model", help="model/ folder written by `radiomics train`."),
    features: Path = typer.Option(..., "--features", "-f", help="Feature table of the patients to score."),
    out: Path = typer.Option(..., "--out", "-o", help="CSV of patient_id, prob."),
) -> None:
    """Score new patients with a saved radiomics model (a prediction table: patient_id, split, label, model, prob)."""
    with user_errors():
        from osteomet.pipeline.radiomics import predict_radiomics

        table = predict_radiomics(model_dir, features, out)
    console.print(f"scored {len(table)} patients -> [bold]{out}[/]")
