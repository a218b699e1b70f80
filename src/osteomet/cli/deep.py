"""``osteomet deep``: the 3D-ResNet bone-metastasis classifiers (grid, train, predict, features, Grad-CAM)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated

import typer

from osteomet.cli._common import (
    ConfigOption,
    DeviceOption,
    MaxEpochsOption,
    console,
    err_console,
    interruptible,
    progress_bar,
    user_errors,
)
from osteomet.layout import PATIENTS
from osteomet.utils.cores import resolve_jobs

app = typer.Typer(help="3D-ResNet classifiers on the tumour ROI crops: grid search on validation, prediction table, "
                  "deep features, Grad-CAM.", no_args_is_help=True)

PreprocessedOption = Annotated[Path, typer.Option("--preprocessed", "-p", help="Output of `osteomet preprocess mri`.")]
ManifestOption = Annotated[Path, typer.Option("--manifest", "-m", help="bpMRI manifest (split, label).")]
SegdirOption = Annotated[Path | None, typer.Option(
    help="Segmentation folder the crops were preprocessed with (--segdir of preprocess): checks and records the "
         "mask source (reviewed > auto > manifest).")]
ModelOption = Annotated[Path, typer.Option("--model", help="Grid folder (its winner) or run folder.")]


@contextlib.contextmanager
def _two_bars(outer: str, n_outer: int, inner: str | None, n_inner: int) -> Iterator[tuple[Callable, Callable]]:
    """Configuration and epoch progress bars in one display; yields (advance outer, advance/reset inner)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console) as progress:
        top = progress.add_task(outer, total=n_outer)
        sub = progress.add_task(inner, total=n_inner) if inner else None

        def advance_inner(epoch: int, _row: dict) -> None:
            if sub is not None:
                progress.update(sub, completed=epoch + 1)

        def advance_outer(_result: dict) -> None:
            progress.advance(top)
            if sub is not None:
                progress.reset(sub, total=n_inner)

        yield advance_outer, advance_inner


def _cohort(preprocessed: Path, manifest: Path, segdir: Path | None):
    from osteomet.pipeline.deep import deep_cohort

    return deep_cohort(preprocessed, manifest, segdir)


def _fmt(value) -> str:
    import math

    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


@app.command("grid")
def grid(
    preprocessed: PreprocessedOption,
    manifest: ManifestOption,
    out: Path = typer.Option(..., "--out", "-o", help="Grid folder: grid.csv, heatmap.png, winner.json, configs/."),
    config: ConfigOption = "default",
    segdir: SegdirOption = None,
    jobs: int | None = typer.Option(None, min=1, help="Configurations trained in parallel (default: every core, "
                                      "or $OSTEOMET_JOBS; cores / jobs torch threads each)."),
    scheduler: str | None = typer.Option(None, help="Existing Dask scheduler (tcp://host:port) instead of --jobs."),
    resume: bool = typer.Option(False, help="Continue the interrupted grid in --out (finished configurations are kept)."),
    device: DeviceOption = None,
    max_epochs: MaxEpochsOption = None,
) -> None:
    """Every depth x learning rate x optimiser on split=train, judged on split=val only; the winner is kept."""
    with user_errors():
        from rich.table import Table

        from osteomet.config import load_training_config
        from osteomet.mri.classifier.config import load_classifier_config
        from osteomet.mri.classifier.grid import grid_specs, run_grid

        settings = load_training_config(load_classifier_config, config, max_epochs)
        _, patients, guard = _cohort(preprocessed, manifest, segdir)
        jobs = resolve_jobs(jobs)
        in_process = jobs == 1 and scheduler is None
        with _two_bars("configurations", len(grid_specs(settings)), "epochs" if in_process else None,
                       settings.max_epochs) as (on_config, on_epoch):
            with interruptible(out):
                table, winner = run_grid(preprocessed, out, settings, guard, patients, jobs=jobs, scheduler=scheduler,
                                         resume=resume, device=device, on_config=on_config,
                                         on_epoch=on_epoch if in_process else None)
    summary = Table(title=f"validation AUC (n={int(table['n_val'].iloc[0])}, DeLong 95% CI)")
    for column in ("configuration", "AUC", "95% CI", "ACC", "selection score", "best epoch", ""):
        summary.add_column(column)
    for row in table.itertuples():
        summary.add_row(row.name, _fmt(row.val_auc), f"{_fmt(row.val_auc_low)}-{_fmt(row.val_auc_high)}",
                        _fmt(row.val_acc), _fmt(row.val_score), str(row.best_epoch),
                        "winner" if row.name == winner["name"] else "")
    console.print(summary)
    console.print(f"winner {winner['name']} (validation AUC {_fmt(winner['val_auc'])}) -> [bold]{out / 'winner.json'}[/]")


@app.command("train")
def train(
    preprocessed: PreprocessedOption,
    manifest: ManifestOption,
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (checkpoints/, history.csv, run.json)."),
    config: ConfigOption = "default",
    depth: int | None = typer.Option(None, help="ResNet depth (default: the config's first)."),
    optimizer: str | None = typer.Option(None, help="sgd, adam, adamw or rmsprop (default: the config's first)."),
    lr: float | None = typer.Option(None, help="Learning rate (default: the config's first)."),
    segdir: SegdirOption = None,
    resume: bool = typer.Option(False, help="Continue the interrupted run in --out from its last checkpoint."),
    device: DeviceOption = None,
    max_epochs: MaxEpochsOption = None,
) -> None:
    """One configuration on split=train, early-stopped on split=val AUC; Ctrl-C is safe, continue with --resume."""
    with user_errors():
        from osteomet.config import load_training_config
        from osteomet.errors import InputError
        from osteomet.mri.classifier.config import load_classifier_config
        from osteomet.mri.classifier.data import split_ids
        from osteomet.mri.classifier.train import RunSpec, train_run
        from osteomet.utils.files import write_text_atomic

        settings = load_training_config(load_classifier_config, config, max_epochs)
        spec = RunSpec(depth or settings.depths[0], optimizer or settings.optimizers[0], lr or settings.learning_rates[0])
        checked = settings.model_copy(update={"depths": [spec.depth], "optimizers": [spec.optimizer],
                                              "learning_rates": [spec.learning_rate]})
        try:
            type(settings).model_validate(checked.model_dump())
        except ValueError as exc:
            raise InputError(f"--depth/--optimizer/--lr: {exc}") from None
        _, patients, guard = _cohort(preprocessed, manifest, segdir)
        labels = {"train": guard.labels("train", "fit", split_ids(patients, "train")),
                  "val": guard.labels("val", "select", split_ids(patients, "val"))}
        with progress_bar(f"train {spec.name}", settings.max_epochs) as advance:
            with interruptible(out):
                result = train_run(preprocessed, out, settings, spec, train_labels=labels["train"].to_dict(),
                                   val_labels=labels["val"].to_dict(), resume=resume, device=device,
                                   on_epoch=lambda _e, _r: advance())
        write_text_atomic(out / PATIENTS, patients.to_csv(index=False))
    console.print(f"{spec.name}: validation AUC {_fmt(result.val_auc)} (95% CI {_fmt(result.val_auc_low)}-"
                  f"{_fmt(result.val_auc_high)}), ACC {_fmt(result.val_acc)} at epoch {result.best_epoch} "
                  f"({result.epochs_run} epochs{', stopped early' if result.stopped_early else ''}) -> [bold]{out}[/]")


@app.command("predict")
def predict(
    preprocessed: PreprocessedOption,
    manifest: ManifestOption,
    model: ModelOption,
    out: Path = typer.Option(..., "--out", "-o", help="Prediction table (CSV: patient_id, split, label, model, prob)."),
    segdir: SegdirOption = None,
    oof_folds: int = typer.Option(5, min=0, help="Training patients scored out-of-fold: the model's configuration "
                                  "refitted on k-1 folds (in OUT's folder, <stem>_folds/); 0 keeps in-sample scores."),
    device: DeviceOption = None,
) -> None:
    """Bone-metastasis probability of every patient with a ROI crop; AUC per split at the end."""
    with user_errors():
        from rich.table import Table

        from osteomet.errors import OutputExistsError
        from osteomet.evaluation import delong_ci
        from osteomet.evaluation.errors import EvaluationInputError
        from osteomet.mri.classifier.predict import write_prediction_table
        from osteomet.pipeline.deep import deep_prediction_table

        if out.is_dir():
            raise OutputExistsError(f"{out}: is a folder; give the prediction table's file name (e.g. predictions.csv)")
        cohort, patients, guard = _cohort(preprocessed, manifest, segdir)
        with progress_bar("out-of-fold refits", oof_folds, transient=True) as advance:
            table = deep_prediction_table(model, preprocessed, cohort, patients, guard, oof_folds=oof_folds,
                                          folds_dir=out.parent / f"{out.stem}_folds", device=device,
                                          progress=advance)
        write_prediction_table(table, out)
    summary = Table(title=f"{table['model'].iloc[0]}: AUC per split (DeLong 95% CI)")
    for column in ("split", "n", "AUC", "95% CI"):
        summary.add_column(column)
    for split, part in table.dropna(subset=["label"]).groupby("split", sort=False):
        try:
            ci = delong_ci(part["label"].astype(int), part["prob"])
            summary.add_row(split, str(len(part)), _fmt(ci.auc), f"{_fmt(ci.low)}-{_fmt(ci.high)}")
        except EvaluationInputError:
            summary.add_row(split, str(len(part)), "n/a", "needs 2 per class")
    console.print(summary)
    console.print(f"{len(table)} patients -> [bold]{out}[/]")


@app.command("features")
def features(
    preprocessed: PreprocessedOption,
    manifest: ManifestOption,
    model: ModelOption,
    out: Path = typer.Option(..., "--out", "-o", help="Folder for features.parquet and features.json."),
    pca: int | None = typer.Option(None, min=1, help="Reduce to this many principal components (fitted on train)."),
    segdir: SegdirOption = None,
    device: DeviceOption = None,
) -> None:
    """Penultimate-layer activations of the chosen model for every patient with a ROI crop (for fusion)."""
    with user_errors():
        from osteomet.mri.classifier.features import deep_features, write_features

        _, patients, _ = _cohort(preprocessed, manifest, segdir)
        table, meta = deep_features(model, preprocessed, patients, pca_components=pca, device=device)
        path = write_features(table, meta, out)
    console.print(f"{len(table)} patients x {table.shape[1] - 1} features ({meta['name']}"
                  f"{', PCA fitted on train' if pca else ''}) -> [bold]{path}[/]")


@app.command("gradcam")
def gradcam(
    preprocessed: PreprocessedOption,
    manifest: ManifestOption,
    model: ModelOption,
    out: Path = typer.Option(..., "--out", "-o", help="Folder: roi/ and t2/ NIfTI maps, png/, gradcam.csv."),
    patient: list[str] | None = typer.Option(None, "--patient", help="Only this patient (repeatable)."),
    segdir: SegdirOption = None,
    device: DeviceOption = None,
) -> None:
    """Grad-CAM maps (ROI and original T2 geometry) and three-plane overlays through the tumour centre."""
    with user_errors():
        from osteomet.errors import InputError
        from osteomet.mri.classifier.gradcam import gradcam_cohort

        _, patients, _ = _cohort(preprocessed, manifest, segdir)
        ready = patients.loc[patients["has_roi"], "patient_id"].tolist()
        ids = list(patient) if patient else ready
        unknown = [pid for pid in ids if pid not in ready]
        if unknown:
            raise InputError(f"patient(s) {unknown[:5]} have no ROI crop in {preprocessed} (not in the manifest, or "
                             f"no tumour mask when preprocessed)")
        with progress_bar("grad-cam", len(ids)) as advance:
            table = gradcam_cohort(model, preprocessed, ids, out, device=device, progress=advance)
    empty = int(table["cam_empty"].sum())
    console.print(f"{len(table)} maps ({empty} empty: no region raises the logit) -> [bold]{out}[/]")
