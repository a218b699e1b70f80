"""``osteomet ct detect``: lesion / no-lesion slice classifiers (EfficientNet-B0, ResNet34, DenseNet121)."""

from __future__ import annotations

import math
from pathlib import Path

import typer

from osteomet.cli._common import (
    CTPredictManifestOption,
    DeviceOption,
    PredictCacheOption,
    TrainedArchitecturesOption,
    add_ct_train_command,
    console,
    progress_bars,
    user_errors,
)

app = typer.Typer(help="CT slice detection: MONAI 2D EfficientNet-B0, ResNet34 and DenseNet121 on bone tiles of "
                       "each axial slice (bone window level 400, width 1800 HU in its presets); a slice scores its "
                       "highest tile.", no_args_is_help=True)


add_ct_train_command(app, "detection", "Split by patient, cache the slices, train each classifier (best validation AUC "
                                         "or final epoch, as the config says).")


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
