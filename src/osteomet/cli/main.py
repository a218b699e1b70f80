"""``osteomet``: one command group per pipeline stage."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from osteomet.cli._common import console, progress_bar, user_errors
from osteomet.utils.cores import resolve_jobs

app = typer.Typer(
    name="osteomet",
    help="Bone-metastasis imaging AI for prostate cancer: bpMRI prediction and CT osseous lesions.\n\n"
    "Stages read and write files in a run directory, so any stage can be rerun or picked up later.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,
)
synth_app = typer.Typer(help="Generate seeded synthetic cohorts in the manifest format.", no_args_is_help=True)
manifest_app = typer.Typer(help="Validate cohort manifests and report missing values.", no_args_is_help=True)
image_app = typer.Typer(help="Inspect images (DICOM series, NIfTI, MHA, NRRD).", no_args_is_help=True)
app.add_typer(synth_app, name="synth", rich_help_panel="Data")
app.add_typer(manifest_app, name="manifest", rich_help_panel="Data")
app.add_typer(image_app, name="image", rich_help_panel="Data")


def _add_stages() -> None:
    from osteomet.cli import ct, deep, evaluate, predict, preprocess, radiomics, report, run, segment

    app.add_typer(preprocess.app, name="preprocess", rich_help_panel="Preprocess")
    app.add_typer(segment.app, name="segment", rich_help_panel="Models")
    app.add_typer(radiomics.app, name="radiomics", rich_help_panel="Models")
    app.add_typer(deep.app, name="deep", rich_help_panel="Models")
    app.add_typer(ct.app, name="ct", rich_help_panel="CT")
    app.add_typer(evaluate.app, name="evaluate", rich_help_panel="Evaluation")
    app.add_typer(run.app, name="run", rich_help_panel="Study")
    app.add_typer(predict.app, name="predict", rich_help_panel="Study")
    from osteomet.cli import importing

    app.add_typer(importing.app, name="import", rich_help_panel="Data")
    app.command("report", rich_help_panel="Study")(report.report)


_add_stages()


@app.callback()
def _main(version: bool = typer.Option(False, "--version", help="Print the version and exit.", is_eager=True)) -> None:
    if version:
        from osteomet import __version__

        console.print(__version__)
        raise typer.Exit()


#: MRISynthConfig's MIN_SCALE, repeated so that the CLI starts without loading the generator (a test keeps them equal).
MIN_SYNTH_SCALE = 0.1


@synth_app.command("mri")
def synth_mri(
    out: Path = typer.Option(..., "--out", "-o", help="New or empty folder for images/, labels/, manifest.csv, "
                                                     "truth.csv."),
    n: int = typer.Option(40, "--n", min=1, help="Number of patients (at least 10 at the default external fraction: "
                                                 "`run mri` needs 8 internal patients, 4 of each class)."),
    seed: int = typer.Option(0, help="Random seed (same seed, same cohort)."),
    scale: float = typer.Option(0.25, help=f"In-plane matrix factor, {MIN_SYNTH_SCALE:g} to 1.0; 1.0 = scanner matrix "
                                "(512/320)."),
    external_fraction: float = typer.Option(96 / 414, min=0.0, max=1.0, help="Share of patients from the external centre C2."),
    image_format: str = typer.Option("nii.gz", "--format", help="nii.gz, mha or nrrd."),
    jobs: Optional[int] = typer.Option(None, min=1, help="Worker processes (default: every core, or $OSTEOMET_JOBS)."),
    overwrite: bool = typer.Option(False, help="Replace a cohort previously generated in --out (only its files)."),
) -> None:
    """Synthetic bpMRI cohort: T2, high-b DWI, ADC and tumour masks from two centres."""
    with user_errors():
        from osteomet.errors import InputError

        if not MIN_SYNTH_SCALE <= scale <= 1.0:
            raise InputError(f"--scale {scale:g}: the in-plane matrix factor must be between {MIN_SYNTH_SCALE:g} and 1.0; "
                             f"below {MIN_SYNTH_SCALE:g} the smallest synthetic tumours fall between the voxels of "
                             f"the coarsest grid")
        from osteomet.data.synth._cohort import claim_cohort_folder
        from osteomet.data.synth.mri import MRISynthConfig, check_run_mri_size, generate_mri_cohort

        check_run_mri_size(n, external_fraction)
        claim_cohort_folder(out, overwrite=overwrite)  # refused before the progress bar starts
        config = MRISynthConfig(scale=scale, external_fraction=external_fraction, image_format=image_format)
        with progress_bar("synth mri", n) as advance:
            path = generate_mri_cohort(out, n, seed=seed, config=config, progress=advance, overwrite=overwrite,
                                         jobs=resolve_jobs(jobs))
    console.print(f"wrote {n} patients: [bold]{path}[/]")


@synth_app.command("ct")
def synth_ct(
    out: Path = typer.Option(..., "--out", "-o", help="New or empty folder for images/, labels/, manifest.csv, "
                                                     "lesions_truth.csv."),
    n: int = typer.Option(10, "--n", min=1, help="Number of patients."),
    seed: int = typer.Option(0, help="Random seed (same seed, same cohort)."),
    region: str = typer.Option("whole_body", help="whole_body, torso or abdomen_pelvis."),
    size: int = typer.Option(128, min=32, max=1024, help="In-plane matrix (FOV stays 500 mm)."),
    jobs: Optional[int] = typer.Option(None, min=1, help="Worker processes (default: every core, or $OSTEOMET_JOBS)."),
    overwrite: bool = typer.Option(False, help="Replace a cohort previously generated in --out (only its files)."),
) -> None:
    """Synthetic CT cohort in HU with TotalSegmentator bone labels and sclerotic/lytic lesions."""
    with user_errors():
        from osteomet.data.synth._cohort import claim_cohort_folder
        from osteomet.data.synth.ct import CTSynthConfig, generate_ct_cohort

        claim_cohort_folder(out, overwrite=overwrite)  # refused before the progress bar starts
        config = CTSynthConfig(region=region, inplane_size=size)
        with progress_bar("synth ct", n) as advance:
            path = generate_ct_cohort(out, n, seed=seed, config=config, progress=advance, overwrite=overwrite,
                                         jobs=resolve_jobs(jobs))
    console.print(f"wrote {n} patients: [bold]{path}[/]")


@manifest_app.command("check")
def manifest_check(
    manifest: Path = typer.Argument(..., help="Manifest CSV (one row per patient)."),
    kind: Optional[str] = typer.Option(None, help="mri or ct (default: recognised from the columns)."),
    check_files: bool = typer.Option(True, help="Check that every referenced file exists."),
) -> None:
    """Validate a manifest: every problem with its line and patient, then missing values."""
    from rich.table import Table

    with user_errors():
        from osteomet.data.manifest import read_manifest

        result = read_manifest(manifest, kind=kind, check_files=check_files)  # type: ignore[arg-type]
    console.print(f"[green]ok[/]: {result.kind} manifest with {len(result)} patients ({manifest})")
    report = result.missing_report()
    if len(report):
        table = Table(title="missing values")
        for column in ("column", "n_missing", "fraction", "patients"):
            table.add_column(column)
        for row in report.itertuples(index=False):
            table.add_row(row.column, str(row.n_missing), f"{row.fraction:.1%}", row.patients[:80])
        console.print(table)
    for warning in result.warnings:
        if warning.startswith("ignored"):
            console.print(f"[yellow]note[/]: {warning}")


@app.command("split", rich_help_panel="Data")
def split(
    manifest: Path = typer.Option(..., "--manifest", "-m", help="Manifest without a split column."),
    out: Path = typer.Option(..., "--out", "-o", help="New manifest with the split column (never the input)."),
    external_centre: Optional[List[str]] = typer.Option(None, "--external-centre", help="Centre held out as the "
                                                         "external cohort (repeat for several)."),
    ratios: str = typer.Option("6:1:3", help="train:val:test within the internal centre(s)."),
    seed: int = typer.Option(0, help="Random seed."),
    replace: bool = typer.Option(False, help="Draw a new split even though the manifest has one."),
) -> None:
    """Patient-level split: stratified train/val/test within internal centres, external centres held out."""
    with user_errors():
        from osteomet.data.splits import split_manifest
        from osteomet.errors import InputError

        try:
            parts = [float(v) for v in ratios.replace(",", ":").split(":")]
        except ValueError:
            raise InputError(f"--ratios {ratios!r}: expected three numbers such as 6:1:3") from None
        frame = split_manifest(manifest, out, external_centres=external_centre or (), ratios=parts, seed=seed,
                               replace=replace)
    counts = frame.groupby(["split", "label"], dropna=False).size().unstack(fill_value=0)
    console.print(counts.to_string())
    console.print(f"split manifest -> [bold]{out}[/]")


@app.command("clinical", rich_help_panel="Models")
def clinical(
    manifest: Path = typer.Option(..., "--manifest", "-m", help="bpMRI manifest or clinical-only table (label, split, "
                                  "age, psa, gleason, isup, hematuria, leukocyturia)."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for model/ and predictions.csv."),
    train_split: str = typer.Option("train", help="Split the model is fitted on."),
    seed: int = typer.Option(0, help="Seed of the folds and XGBoost."),
) -> None:
    """Clinical XGBoost model (missing values allowed, never imputed); out-of-fold training predictions."""
    with user_errors():
        from osteomet.evaluation.roc import auc
        from osteomet.pipeline.clinical import train_clinical_model

        outcome, predictions = train_clinical_model(manifest, out, train_split=train_split, seed=seed)
    for split, group in predictions.dropna(subset=["prob", "label"]).groupby("split"):
        if group["label"].nunique() == 2:
            console.print(f"  {split:9s} n={len(group):4d}  AUC {auc(group['label'], group['prob']):.3f}")
    console.print(f"clinical model and predictions in [bold]{out}[/]" + (" (up to date)" if outcome.skipped else ""))


@image_app.command("info")
def image_info(
    path: Path = typer.Argument(..., help="DICOM series folder or NIfTI/MHA/NRRD file."),
    series_uid: Optional[str] = typer.Option(None, "--series-uid", help="DICOM series to read when the folder holds several."),
) -> None:
    """Geometry and intensity range of an image."""
    with user_errors():
        import numpy as np
        import SimpleITK as sitk

        from osteomet.data.geometry import Geometry
        from osteomet.data.images import read_image

        image = read_image(path, series_uid=series_uid)
    geometry = Geometry.of(image)
    array = sitk.GetArrayViewFromImage(image)
    console.print(f"[bold]{path}[/]")
    console.print(f"  size      {geometry.size}")
    console.print(f"  spacing   {tuple(round(s, 4) for s in geometry.spacing)} mm")
    console.print(f"  origin    {tuple(round(o, 2) for o in geometry.origin)} mm")
    console.print(f"  direction {tuple(round(d, 4) for d in geometry.direction)}")
    console.print(f"  pixel     {image.GetPixelIDTypeAsString()}, range [{np.min(array):g}, {np.max(array):g}]")


@app.command("demo", rich_help_panel="Run")
def demo(
    out: Path = typer.Option(Path("osteomet-demo"), "--out", "-o", help="Run directory."),
    n_mri: int = typer.Option(80, min=4, help="Synthetic bpMRI patients."),
    n_ct: int = typer.Option(10, min=1, help="Synthetic CT patients."),
    seed: int = typer.Option(0, help="Random seed."),
    jobs: Optional[int] = typer.Option(None, min=1, help="Worker processes (default: every core, or $OSTEOMET_JOBS)."),
    scheduler: Optional[str] = typer.Option(None, help="Dask scheduler address (tcp://HOST:PORT): both studies' "
                                            "parallel stages run on that cluster (results equal a local run's; "
                                            "docs/scaling.md)."),
) -> None:
    """Both studies end to end on the embedded synthetic cohorts (tiny models), a prediction and the HTML report."""
    with user_errors():
        from osteomet.pipeline.demo import run_demo

        run_demo(out, n_mri=n_mri, n_ct=n_ct, seed=seed, jobs=jobs, scheduler=scheduler, console=console)


if __name__ == "__main__":  # pragma: no cover
    app()
