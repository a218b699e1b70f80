"""``osteomet segment``: UNETR training and prediction, and the radiologist review loop."""

from __future__ import annotations

from pathlib import Path

import typer

from osteomet.cli._common import ConfigOption, DeviceOption, MaxEpochsOption, console, interruptible, user_errors

app = typer.Typer(help="UNETR tumour segmentation (3 channels) and the semi-automatic review loop.",
                  no_args_is_help=True)


@app.command("train")
def train(
    preprocessed: Path = typer.Option(..., "--preprocessed", "-p", help="Output of `osteomet preprocess mri`."),
    manifest: Path = typer.Option(..., "--manifest", "-m", help="Manifest with split and masks."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (checkpoints/, history.csv, settings.yaml)."),
    config: ConfigOption = "default",
    resume: bool = typer.Option(False, help="Continue the interrupted run in --out from its last checkpoint."),
    device: DeviceOption = None,
    max_epochs: MaxEpochsOption = None,
) -> None:
    """Train on split=train, early-stop on split=val Dice; Ctrl-C is safe, continue with --resume."""
    with user_errors():
        from osteomet.config import load_training_config
        from osteomet.mri.segmentation.config import load_segmentation_config
        from osteomet.pipeline.segmentation import train_segmentation

        settings = load_training_config(load_segmentation_config, config, max_epochs)
        with interruptible(out):
            outcome = train_segmentation(preprocessed, manifest, out, settings, resume=resume, device=device)
    result = outcome.summary
    if outcome.skipped:
        console.print(f"[dim]up to date: already trained with these inputs and settings ({out})[/]")
    console.print(f"best validation Dice {result['best_dice']:.3f} at epoch {result['best_epoch']} "
                  f"({result['epochs_run']} epochs{', stopped early' if result['stopped_early'] else ''}) "
                  f"-> [bold]{out}[/]")


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
        from osteomet.pipeline.segmentation import predict_segmentation, segmentation_summary

        outcome, table = predict_segmentation(preprocessed, manifest, model, out, postprocess=postprocess,
                                              device=device)
        summary = segmentation_summary(out)
    console.print(f"{len(table)} masks -> [bold]{out / 'auto'}[/]" + (" (up to date)" if outcome.skipped else ""))
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
