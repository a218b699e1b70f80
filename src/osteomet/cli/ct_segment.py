"""``osteomet ct segment``: 2D UNet, residual UNet and attention UNet lesion segmentation, compared per patient."""

from __future__ import annotations

from pathlib import Path
from typing import List

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

app = typer.Typer(help="CT lesion segmentation: MONAI 2D UNet, residual UNet and AttentionUnet (Dice + CE), "
                       "masks in each CT's own geometry, models compared per patient.", no_args_is_help=True)


add_ct_train_command(app, "segmentation", "Split by patient, cache the slices, train each network with early stopping "
                                         "on validation Dice.")


@app.command("predict")
def predict(
    manifest: CTPredictManifestOption,
    model: Path = typer.Option(..., "--model", help="Run folder of `osteomet ct segment train`."),
    out: Path = typer.Option(..., "--out", "-o", help="Output: <architecture>/masks/<patient>.nii.gz, metrics.csv, comparison/."),
    architecture: TrainedArchitecturesOption = None,
    cache: PredictCacheOption = None,
    compare_split: str = typer.Option("test", help="Split whose patients enter the model comparison ('all' for every patient)."),
    device: DeviceOption = None,
) -> None:
    """Masks as NIfTI on each CT's grid; per-patient Dice/precision/recall; paired model comparison (Holm)."""
    with user_errors():
        from osteomet.ct.segmentation.compare import compare_segmentations
        from osteomet.ct.segmentation.infer import predict_segmentation
        from osteomet.data.manifest import read_manifest

        cohort = read_manifest(manifest, kind="ct")
        with progress_bars(("slices", len(cohort)), ("segment", len(cohort))) as (cached, segmented):
            table = predict_segmentation(cohort, model, out, cache=cache, architectures=architecture, device=device,
                                         on_cached=cached, progress=segmented)
        results = None
        if "dice" in table and table["dice"].notna().any():
            split = None if compare_split == "all" else compare_split
            if split is None or (table["split"] == split).any():
                results = compare_segmentations(table.dropna(subset=["dice"]), out / "comparison", split=split)
    console.print(f"{table['patient_id'].nunique()} patient(s) x {table['model'].nunique()} model(s) -> [bold]{out}[/]")
    if results is not None:
        summary = results["summary"]
        for row in summary[summary["metric"] == "dice"].itertuples():
            console.print(f"  {row.model:16s} n={row.n:3d} Dice mean {row.mean:.3f} median {row.median:.3f}")


@app.command("compare")
def compare(
    metrics: List[Path] = typer.Argument(..., help="Per-patient metrics.csv files (MONAI models, nnU-Net import)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for summary.csv, pairwise_<metric>.csv, boxplot_<metric>.png."),
    split: str = typer.Option("test", help="Split whose patients are compared ('all' for every patient)."),
    adjust: str = typer.Option("holm", help="p-value adjustment over model pairs (holm or bh)."),
) -> None:
    """Paired t-test and Wilcoxon between every pair of models on the same patients, adjusted p-values."""
    with user_errors():

        from osteomet.ct.segmentation.compare import compare_segmentations, read_metrics

        table = read_metrics(metrics)
        results = compare_segmentations(table, out, adjust=adjust, split=None if split == "all" else split)
    if "pairwise_dice" in results:
        for row in results["pairwise_dice"].itertuples():
            console.print(f"  {row.model_a} vs {row.model_b}: n={row.n} mean Dice diff {row.mean_diff:+.3f}, "
                          f"t p={row.t_p_adj:.3g}, Wilcoxon p={row.wilcoxon_p_adj:.3g} ({adjust})")
    console.print(f"-> [bold]{out}[/]")
