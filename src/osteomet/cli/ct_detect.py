"""``osteomet ct detect``: lesion / no-lesion slice classifiers (EfficientNet-B0, ResNet34, DenseNet121)."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from osteomet.cli._common import console, progress_bar, user_errors

app = typer.Typer(help="CT slice detection: MONAI 2D EfficientNet-B0, ResNet34 and DenseNet121 on bone-windowed "
                       "axial slices (level 400, width 1800 HU by default).", no_args_is_help=True)


@app.command("train")
def train(
    manifest: Path = typer.Option(..., "--manifest", "-m", help="CT manifest with ct and lesion_mask (split optional)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder: <architecture>/checkpoints, config.yaml, patients.csv."),
    config: str = typer.Option("default", help="Preset ('default', 'tiny') or YAML file."),
    model: Optional[List[str]] = typer.Option(None, "--model", help="Architecture(s) to train (default: the config's)."),
    cache: Optional[Path] = typer.Option(None, help="Slice cache folder (default OUT/slices; share it between runs)."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda (default: cuda when present)."),
    max_epochs: Optional[int] = typer.Option(None, help="Override the config's max_epochs."),
) -> None:
    """Split by patient, cache the slices, train each classifier with early stopping on validation AUC."""
    with user_errors():
        import pandas as pd

        from osteomet.ct.detection.config import load_detection_config
        from osteomet.ct.detection.train import prepare_detection_run, train_detector
        from osteomet.data.manifest import read_manifest

        settings = load_detection_config(config)
        if max_epochs is not None:
            settings = settings.model_copy(update={"max_epochs": max_epochs})
        cohort = read_manifest(manifest, kind="ct", require=("lesion_mask",))
        with progress_bar("slices", len(cohort)) as advance:
            root, settings = prepare_detection_run(cohort, out, settings, architectures=model, cache=cache,
                                                   on_patient=advance)
        console.print(pd.read_csv(out / "class_balance.csv").to_string(index=False))
        for architecture in settings.architectures:
            with progress_bar(f"train {architecture}", settings.max_epochs) as advance:
                result = train_detector(root, out, settings, architecture, device=device, progress=advance)
            console.print(f"{architecture}: best validation AUC {result.best_auc:.3f} at epoch {result.best_epoch}, "
                          f"threshold {result.threshold:.3g} ({result.epochs_run} epochs"
                          f"{', stopped early' if result.stopped_early else ''})")
    console.print(f"-> [bold]{out}[/]")


@app.command("predict")
def predict(
    manifest: Path = typer.Option(..., "--manifest", "-m", help="CT manifest (lesion_mask optional: metrics need it)."),
    model: Path = typer.Option(..., "--model", help="Run folder of `osteomet ct detect train`."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: <architecture>/slice_scores.csv, metrics.csv, gradcam/."),
    architecture: Optional[List[str]] = typer.Option(None, "--architecture", "-a", help="Only these trained architectures."),
    cache: Optional[Path] = typer.Option(None, help="Slice cache folder (default OUT/slices)."),
    gradcam: bool = typer.Option(True, help="Grad-CAM overlays of true and false positives."),
    n_boot: int = typer.Option(1000, help="Bootstrap resamples for the confidence intervals."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda (default: cuda when present)."),
) -> None:
    """Slice and patient (max over slices) scores; precision, recall, F1, AUC with bootstrap CIs per split."""
    with user_errors():
        from osteomet.ct.detection.infer import predict_detection, run_config, trained_architectures
        from osteomet.ct.slices import cache_cohort
        from osteomet.data.manifest import read_manifest

        cohort = read_manifest(manifest, kind="ct")
        architecture = architecture or trained_architectures(model)
        cache = cache or out / "slices"
        with progress_bar("slices", len(cohort)) as advance:
            cache_cohort(cohort, cache, run_config(model).slices, progress=advance)
        with progress_bar("detect", len(cohort) * len(architecture)) as advance:
            results = predict_detection(cohort, model, out, cache=cache, architectures=architecture, device=device,
                                        gradcam=gradcam, n_resamples=n_boot, progress=advance)
    for name, metrics in results.items():
        shown = metrics[metrics["metric"].isin(["auc", "precision", "recall", "f1"])]
        for row in shown.itertuples():
            console.print(f"  {name:16s} {row.level:7s} {row.split:8s} n={row.n:5d} {row.metric:9s} "
                          f"{row.estimate:.3f} (95% CI {row.ci_low:.3f}-{row.ci_high:.3f})")
    console.print(f"-> [bold]{out}[/]")
