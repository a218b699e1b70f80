"""``osteomet segment``: UNETR training and prediction, and the radiologist review loop."""

from __future__ import annotations

from pathlib import Path

import typer

from osteomet.cli._common import (
    ConfigOption,
    DeviceOption,
    MaxEpochsOption,
    console,
    load_settings,
    progress_bar,
    user_errors,
)
from osteomet.errors import MissingInputError

app = typer.Typer(help="UNETR tumour segmentation (3 channels) and the semi-automatic review loop.",
                  no_args_is_help=True)


@app.command("train")
def train(
    preprocessed: Path = typer.Option(..., "--preprocessed", "-p", help="Output of `osteomet preprocess mri`."),
    manifest: Path = typer.Option(..., "--manifest", "-m", help="Manifest with split and masks."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (checkpoints/, history.csv, config.yaml)."),
    config: ConfigOption = "default",
    resume: bool = typer.Option(False, help="Continue the interrupted run in --out from its last checkpoint."),
    device: DeviceOption = None,
    max_epochs: MaxEpochsOption = None,
) -> None:
    """Train on split=train, early-stop on split=val Dice; Ctrl-C is safe, continue with --resume."""
    with user_errors():
        import pandas as pd

        from osteomet.data.manifest import read_manifest
        from osteomet.mri.segmentation.config import load_segmentation_config
        from osteomet.mri.segmentation.train import train_unetr

        settings = load_settings(load_segmentation_config, config, max_epochs)
        cohort = read_manifest(manifest, kind="mri")
        index = pd.read_csv(preprocessed / "index.csv") if (preprocessed / "index.csv").exists() else None
        if index is None:
            raise MissingInputError(f"{preprocessed}: no index.csv; run `osteomet preprocess mri` first")
        ready = set(index.loc[index["has_mask"].astype(bool) & (index["status"] != "failed"), "patient_id"])
        ids = {s: [r.patient_id for r in cohort if r.split == s and r.patient_id in ready] for s in ("train", "val")}
        with progress_bar("train unetr", settings.max_epochs) as advance:
            try:
                result = train_unetr(preprocessed, out, settings, train_ids=ids["train"], val_ids=ids["val"],
                                     resume=resume, device=device, progress=advance)
            except KeyboardInterrupt:
                console.print(f"[yellow]interrupted[/]: continue with the same command plus --resume ({out})")
                raise typer.Exit(130) from None
    console.print(f"best validation Dice {result.best_dice:.3f} at epoch {result.best_epoch} "
                  f"({result.epochs_run} epochs{', stopped early' if result.stopped_early else ''}) -> [bold]{out}[/]")


@app.command("predict")
def predict(
    preprocessed: Path = typer.Option(..., "--preprocessed", "-p", help="Output of `osteomet preprocess mri`."),
    manifest: Path = typer.Option(..., "--manifest", "-m", help="Patients to segment."),
    model: Path = typer.Option(..., "--model", help="Run folder of `osteomet segment train`."),
    out: Path = typer.Option(..., "--out", "-o", help="Segmentation folder: auto/<patient>.nii.gz, metrics.csv."),
    postprocess: bool = typer.Option(True, help="Keep only the largest connected component."),
    device: DeviceOption = None,
) -> None:
    """Masks in each patient's original T2 geometry; Dice/precision/recall where a reference exists."""
    with user_errors():
        from osteomet.config import load_config
        from osteomet.data.manifest import read_manifest
        from osteomet.mri.segmentation.config import SegmentationConfig
        from osteomet.mri.segmentation.infer import predict_cohort, summarise
        from osteomet.utils.files import write_text_atomic

        settings = load_config(model / "config.yaml", SegmentationConfig)
        cohort = read_manifest(manifest, kind="mri")
        with progress_bar("segment", len(cohort)) as advance:
            table = predict_cohort(preprocessed, model, out, settings, cohort, device=device,
                                   postprocess=postprocess, progress=advance)
        summary = summarise(table) if "dice" in table else None
        if summary is not None:
            write_text_atomic(out / "summary.csv", summary.to_csv(index=False))
    console.print(f"{len(table)} masks -> [bold]{out / 'auto'}[/]")
    if summary is not None:
        for row in summary[summary["metric"] == "dice"].itertuples():
            console.print(f"  {row.split:9s} n={row.n:3d}  Dice {row.mean:.3f} (95% CI {row.ci_low:.3f}-{row.ci_high:.3f})")


def _add_review() -> None:
    try:
        from osteomet.cli import review
    except ImportError:  # pragma: no cover - the review loop ships with the package
        return
    for command in review.app.registered_commands:
        app.registered_commands.append(command)


_add_review()
