"""``osteomet ct detect``: lesion / no-lesion slice classifiers (EfficientNet-B0, ResNet34, DenseNet121)."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from osteomet.cli._common import (
    ConfigOption,
    CTPredictManifestOption,
    CTRunOption,
    CTTrainManifestOption,
    DeviceOption,
    MaxEpochsOption,
    ModelsToTrainOption,
    PredictCacheOption,
    TrainCacheOption,
    TrainedArchitecturesOption,
    console,
    load_settings,
    progress_bars,
    user_errors,
)

app = typer.Typer(help="CT slice detection: MONAI 2D EfficientNet-B0, ResNet34 and DenseNet121 on bone tiles of "
                       "each axial slice (bone window level 400, width 1800 HU in its presets); a slice scores its "
                       "highest tile.", no_args_is_help=True)


@app.command("train")
def train(
    manifest: CTTrainManifestOption,
    out: CTRunOption,
    config: ConfigOption = "default",
    model: ModelsToTrainOption = None,
    cache: TrainCacheOption = None,
    device: DeviceOption = None,
    max_epochs: MaxEpochsOption = None,
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run in --out from its last epoch, "
                                                        "with the settings recorded there (--config is ignored)."),
) -> None:
    """Split by patient, cache the slices, train each classifier (best validation AUC or final epoch, as the config says)."""
    with user_errors():
        from functools import partial

        import pandas as pd

        from osteomet.ct.detection.config import load_detection_config
        from osteomet.ct.detection.train import train_detector
        from osteomet.ct.slices.run import resumed_settings
        from osteomet.pipeline.ct_models import prepare_ct_run, train_each_architecture

        settings = load_settings(load_detection_config, config, max_epochs)
        if resume:
            settings = resumed_settings(out, settings, max_epochs)
        root, settings = prepare_ct_run(manifest, out, settings, model, cache)
        console.print(pd.read_csv(out / "class_balance.csv").to_string(index=False))
        train_each_architecture(root, out, settings, partial(train_detector, resume=resume), device, lambda result: (
            f"{settings.weights} validation AUC {result.best_auc:.3f} at epoch "
            f"{result.best_epoch}, threshold {result.threshold:.3g} "
            f"({result.epochs_run} epochs{', stopped early' if result.stopped_early else ''})"))
    console.print(f"-> [bold]{out}[/]")


@app.command("predict")
def predict(
    manifest: CTPredictManifestOption,
    model: Path = typer.Option(..., "--model", help="Run folder of `osteomet ct detect train`."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder: <architecture>/slice_scores.csv, metrics.csv, gradcam/."),
    architecture: TrainedArchitecturesOption = None,
    cache: PredictCacheOption = None,
    gradcam: bool = typer.Option(True, help="Grad-CAM overlays of true and false positives."),
    n_boot: int = typer.Option(1000, help="Bootstrap resamples for the confidence intervals."),
    device: DeviceOption = None,
) -> None:
    """Slice and patient (max over slices) scores; precision, recall, F1, AUC with bootstrap CIs per split."""
    with user_errors():
        from osteomet.ct.detection.infer import predict_detection, trained_architectures
        from osteomet.data.manifest import read_manifest

        cohort = read_manifest(manifest, kind="ct")
        architecture = architecture or trained_architectures(model)
        with progress_bars(("slices", len(cohort)), ("detect", len(cohort) * len(architecture))) as (cached, scored):
            results = predict_detection(cohort, model, out, cache=cache, architectures=architecture, device=device,
                                        gradcam=gradcam, n_resamples=n_boot, on_cached=cached, progress=scored)
    for name, metrics in results.items():
        shown = metrics[metrics["metric"].isin(["auc", "precision", "recall", "f1"])]
        for row in shown.itertuples():
            console.print(f"  {name:16s} {row.level:7s} {row.split:8s} n={row.n:5d} {row.metric:9s} "
                          f"{row.estimate:.3f} " + ("(no CI: too few patients to resample)" if math.isnan(row.ci_low)
                                                    else f"(95% CI {row.ci_low:.3f}-{row.ci_high:.3f})"))
    console.print(f"-> [bold]{out}[/]")
