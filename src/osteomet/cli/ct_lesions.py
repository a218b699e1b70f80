"""``osteomet ct lesions``, ``osteomet ct lesions-cohort`` and ``osteomet ct icc``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from osteomet.cli._common import console, err_console, user_errors
from osteomet.layout import METRICS

# Analysis settings shared by `lesions` and `lesions-cohort` (defaults are LesionSettings').
_CRITERION = typer.Option("iou", help="Hit criterion: 'iou' (IoU >= --iou-threshold) or 'any' (at least one shared "
                                      "voxel); one-to-one Hungarian matching as picai_eval.")
_IOU_THRESHOLD = typer.Option(0.1, help="IoU threshold of the 'iou' criterion.")
_DIFFUSE_FRACTION = typer.Option(0.5, help="Diffuse when the lesion covers more than this fraction of its bone's "
                                           "cross-section on some slice.")
_CLUSTER_GAP = typer.Option(10.0, help="Lesions at most this far apart along z form one cluster.")
_CLUSTER_UNIT = typer.Option("slices", help="Unit of --cluster-gap: 'slices' or 'mm'.")
_SEED = typer.Option(0, help="Seed of the bootstrap over patients.")


def _settings(diffuse_fraction: float, cluster_gap: float, cluster_unit: str, criterion: str, iou_threshold: float,
              seed: int):
    from osteomet.ct.lesions.cohort import LesionSettings

    return LesionSettings(diffuse_fraction=diffuse_fraction, cluster_gap=cluster_gap, cluster_unit=cluster_unit,
                          criterion=criterion, iou_threshold=iou_threshold, seed=seed)


def _print_metrics(path: Path) -> None:
    import pandas as pd

    metrics = pd.read_csv(path)
    for _, row in metrics[metrics["breakdown"] == "all"].iterrows():
        console.print(f"  {row['metric']:20s} {row['estimate']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}] "
                      f"({row['numerator']:g}/{row['denominator']:g})", highlight=False)


def lesions(
    mask: Path = typer.Option(..., "--mask", "-m", help="Binary lesion mask (predicted, or the one to describe)."),
    bones: Path = typer.Option(..., "--bones", "-b", help="TotalSegmentator v2 'total' label map on the mask's grid."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder for lesions.csv, patients.csv (and metrics)."),
    reference: Optional[Path] = typer.Option(None, "--reference", "-r", help="Reference (manual) lesion mask."),
    ct: Optional[Path] = typer.Option(None, "--ct", help="CT in HU on the same grid, for mean/max HU per lesion."),
    patient_id: Optional[str] = typer.Option(None, help="Patient id in the tables (default: the mask file name)."),
    criterion: str = _CRITERION,
    iou_threshold: float = _IOU_THRESHOLD,
    diffuse_fraction: float = _DIFFUSE_FRACTION,
    cluster_gap: float = _CLUSTER_GAP,
    cluster_unit: str = _CLUSTER_UNIT,
    seed: int = _SEED,
) -> None:
    """Lesions of one mask (3D lesions, bone, diffuse/focal, clusters); with --reference, the matched evaluation."""
    with user_errors():
        from osteomet.pipeline.ct_lesions import analyse_lesion_files
        from osteomet.utils.files import full_suffix

        settings = _settings(diffuse_fraction, cluster_gap, cluster_unit, criterion, iou_threshold, seed)
        pid = patient_id or mask.name[: len(mask.name) - len(full_suffix(mask))]
        outcome, _ = analyse_lesion_files(mask, bones, out, settings=settings, ct=ct, reference=reference,
                                          patient_id=pid)
    summary = outcome.summary
    console.print(f"{pid}: {summary['n_lesions']} lesion(s), {summary['n_clusters']} cluster(s), "
                  f"{summary['total_volume_ml']:.2f} mL -> [bold]{out / 'lesions.csv'}[/]"
                  + (" (up to date)" if outcome.skipped else ""))
    if reference is not None:
        console.print(f"  reference {summary['n_reference']}, detected {summary['n_detected']}, false positives "
                      f"{summary['n_false_positive']} -> {out / 'metrics.csv'}")


def lesions_cohort(
    manifest: Path = typer.Option(..., "--manifest", "-m", help="CT manifest with lesion_mask and bone_map."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    predictions: Optional[Path] = typer.Option(None, "--predictions", "-p",
                                               help="Folder of predicted masks <patient_id>.nii.gz; evaluated "
                                                    "against the manifest's lesion masks."),
    criterion: str = _CRITERION,
    iou_threshold: float = _IOU_THRESHOLD,
    diffuse_fraction: float = _DIFFUSE_FRACTION,
    cluster_gap: float = _CLUSTER_GAP,
    cluster_unit: str = _CLUSTER_UNIT,
    seed: int = _SEED,
) -> None:
    """Per-lesion analysis over a manifest; with --predictions, lesion/patient/bone-level statistics with CIs."""
    with user_errors():
        from osteomet.pipeline.ct_lesions import analyse_lesion_cohort

        settings = _settings(diffuse_fraction, cluster_gap, cluster_unit, criterion, iou_threshold, seed)
        outcome = analyse_lesion_cohort(manifest, out, settings=settings, predictions=predictions)
    console.print(f"{outcome.summary['patients']} patients, {outcome.summary['lesions']} lesion(s) -> "
                  f"[bold]{out / 'lesions.csv'}[/]" + (" (up to date)" if outcome.skipped else ""))
    if (out / METRICS).is_file():
        _print_metrics(out / METRICS)


def icc(
    manual: Path = typer.Option(..., "--manual", help="Manual-mask features (CSV/Parquet, case_id column)."),
    predicted: Path = typer.Option(..., "--predicted", help="Features from the predicted masks, same columns."),
    out: Path = typer.Option(..., "--out", "-o", help="CSV of feature, class, icc, ci_low, ci_high (and n_cases)."),
    model: str = typer.Option("2,1", "--icc", help="ICC form: 2,1 (absolute agreement) or 3,1 (consistency)."),
    plot: Optional[Path] = typer.Option(None, help="Box plot PNG (default: OUT stem + _by_class.png)."),
    summary: Optional[Path] = typer.Option(None, help="Per-class summary CSV (default: OUT stem + _by_class.csv)."),
) -> None:
    """ICC per radiomics feature between predicted and manual masks, summarised by feature class."""
    with user_errors():
        from osteomet.radiomics.reproducibility import run_icc

        report, paths = run_icc(manual, predicted, out, model=model, plot=plot, summary=summary)
    for note in report.notes:
        err_console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)
    console.print(f"ICC({report.model}) over {report.n_cases} cases, {len(report.per_feature)} features -> "
                  f"[bold]{paths['icc']}[/]")
    for _, row in report.by_class.iterrows():
        console.print(f"  {row['class']:10s} n={row['n_features']:4d}  min {row['min']:.3f}  median "
                      f"{row['median']:.3f}  max {row['max']:.3f}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the per-lesion analysis and ICC commands to the ``ct`` group."""
    app.command("lesions")(lesions)
    app.command("lesions-cohort")(lesions_cohort)
    app.command("icc")(icc)
