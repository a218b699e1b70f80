"""``osteomet ct nnunet``: nnU-Net v2 on the CT cohort (export, plan, train, predict, import)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, List, Optional

import typer

from osteomet.cli._common import console, err_console, progress_bar, user_errors

app = typer.Typer(help="nnU-Net v2 lesion segmentation: export the cohort as an nnU-Net dataset with the patient "
                       "split, run nnU-Net's planning, training and inference, import and score its predictions.",
                  no_args_is_help=True)

_NNUNET_DIR = typer.Option(..., "--out", "-o", help="nnU-Net working folder written by `osteomet ct nnunet export` "
                                                   "(holds nnUNet_raw, nnUNet_preprocessed, nnUNet_results).")
_DATASET_ID = typer.Option(None, "--dataset-id", "-d", help="Dataset id (needed only when the folder holds several).")
_CONFIGURATION = typer.Option("3d_fullres", "--configuration", "-c", help="nnU-Net configuration: 2d, 3d_fullres, "
                                                                         "3d_lowres.")
_TRAINER = typer.Option("nnUNetTrainer", "--trainer", "-tr", help="nnU-Net trainer class (nnUNetTrainer_OsteometTiny "
                                                                 "for a smoke run; nnUNetTrainer_OsteometCPU with -c 2d "
                                                                 "for a short CPU run that learns).")
_PLANS = typer.Option("nnUNetPlans", "--plans", "-p", help="nnU-Net plans identifier.")
_DEVICE = typer.Option(None, help="cpu or cuda (default: cuda when present).")
_PROCESSES = typer.Option(1, "--processes", "-np", help="Worker processes for nnU-Net's preprocessing and export.")
_QUIET = typer.Option(False, "--quiet", "-q", help="Only write nnU-Net's output to the log file in the folder.")


@contextlib.contextmanager
def _nnunet_errors() -> Iterator[None]:
    """Input errors as usual; a missing nnU-Net install or a failed nnU-Net step as a red message, exit 2/1."""
    from osteomet.ct.nnunet.run import NnunetNotInstalledError, NnunetRunError

    try:
        with user_errors():
            yield
    except NnunetNotInstalledError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    except NnunetRunError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]: nnU-Net stopped; `osteomet ct nnunet train ... --continue` "
                          "resumes a training from its last checkpoint")
        raise typer.Exit(130) from None


def _echo(quiet: bool):
    return None if quiet else (lambda line: err_console.print(line, markup=False, highlight=False))


@app.command("export")
def export(
    manifest: Path = typer.Option(..., "--manifest", "-m", help="CT manifest (ct, lesion_mask, split)."),
    out: Path = typer.Option(..., "--out", "-o", help="New nnU-Net working folder (an osteomet run folder)."),
    dataset_id: int = typer.Option(501, "--dataset-id", "-d", help="nnU-Net dataset id (1-999)."),
    name: str = typer.Option("OsteometCT", help="nnU-Net dataset name (DatasetXXX_<name>)."),
    splits: Optional[Path] = typer.Option(None, help="CSV with patient_id and split (e.g. the slice dataset's "
                                                     "patients.csv of the MONAI run), to train on the same patients."),
    folds: int = typer.Option(5, help="Cross-validation folds by patient when no patient is in split 'val'."),
    seed: int = typer.Option(0, help="Seed of those folds."),
    overwrite: bool = typer.Option(False, help="Replace an existing dataset with the same id and name in --out."),
) -> None:
    """Write nnUNet_raw/DatasetXXX_Name (imagesTr, labelsTr, imagesTs, labelsTs, dataset.json) and splits_final.json."""
    with _nnunet_errors():
        from osteomet.ct.nnunet.export import export_dataset, read_exported_cases, read_split_table
        from osteomet.data.manifest import read_manifest

        cohort = read_manifest(manifest, kind="ct")
        table = read_split_table(splits) if splits is not None else None
        with progress_bar("export", len(cohort)) as advance:
            layout = export_dataset(cohort, out, dataset_id=dataset_id, dataset_name=name, splits=table,
                                    n_folds=folds, seed=seed, overwrite=overwrite, progress=advance)
        cases = read_exported_cases(layout)
        n_folds = len(layout.read_splits())
    counts = {s: sum(c.split == s for c in cases) for s in ("train", "val", "test", "external")}
    console.print(f"{layout.folder_name}: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
                  + f"; {n_folds} fold(s) in splits_final.json -> [bold]{layout.raw}[/]")


@app.command("plan")
def plan(
    out: Path = _NNUNET_DIR,
    dataset_id: Optional[int] = _DATASET_ID,
    configuration: List[str] = typer.Option(["3d_fullres"], "--configuration", "-c",
                                            help="Configurations to preprocess (repeat the option for several)."),
    processes: int = _PROCESSES,
    preprocess: bool = typer.Option(True, help="Also preprocess (off: integrity check, fingerprint and plans only)."),
    quiet: bool = _QUIET,
) -> None:
    """nnU-Net's dataset integrity check, fingerprint, experiment planning and preprocessing."""
    with _nnunet_errors():
        from osteomet.ct.nnunet.layout import NnunetLayout
        from osteomet.ct.nnunet.run import plan_and_preprocess

        layout = NnunetLayout.find(out, dataset_id)
        plans = plan_and_preprocess(layout, configurations=configuration, num_processes=processes,
                                    preprocess=preprocess, echo=_echo(quiet))
    console.print(f"plans -> [bold]{plans}[/]")


@app.command("train")
def train(
    out: Path = _NNUNET_DIR,
    dataset_id: Optional[int] = _DATASET_ID,
    configuration: str = _CONFIGURATION,
    fold: str = typer.Option("0", "--fold", "-f", help="Fold of splits_final.json (0 = the manifest's train/val), "
                                                       "or 'all'."),
    trainer: str = _TRAINER,
    plans: str = _PLANS,
    device: Optional[str] = _DEVICE,
    processes: int = _PROCESSES,
    da_processes: Optional[int] = typer.Option(None, help="Data-augmentation worker processes (nnUNet_n_proc_DA; "
                                                          "0 = in the main process)."),
    resume: bool = typer.Option(False, "--continue", help="Continue an interrupted training from its checkpoint."),
    quiet: bool = _QUIET,
) -> None:
    """nnU-Net's run_training for one fold; plans and preprocesses first when that has not been done."""
    with _nnunet_errors():
        from osteomet.ct.nnunet.layout import NnunetLayout
        from osteomet.ct.nnunet.run import train as run_train

        layout = NnunetLayout.find(out, dataset_id)
        folder = run_train(layout, configuration=configuration, fold=fold, trainer=trainer, plans=plans,
                           device=device, num_processes=processes, n_proc_da=da_processes,
                           continue_training=resume, echo=_echo(quiet))
    console.print(f"trained fold {fold} -> [bold]{folder}[/]")


@app.command("predict")
def predict(
    out: Path = _NNUNET_DIR,
    dataset_id: Optional[int] = _DATASET_ID,
    output: Optional[Path] = typer.Option(None, help="Prediction folder (default: <out>/predictions/<model>)."),
    input_dir: Optional[Path] = typer.Option(None, "--input", "-i", help="Folder of <case>_0000.nii.gz "
                                                                        "(default: the dataset's imagesTs)."),
    configuration: str = _CONFIGURATION,
    fold: List[str] = typer.Option(["0"], "--fold", "-f", help="Folds to ensemble (repeat the option)."),
    trainer: str = _TRAINER,
    plans: str = _PLANS,
    checkpoint: str = typer.Option("checkpoint_final.pth", help="Checkpoint file of each fold."),
    device: Optional[str] = _DEVICE,
    disable_tta: bool = typer.Option(False, help="No mirroring test-time augmentation (faster)."),
    processes: int = _PROCESSES,
    overwrite: bool = typer.Option(False, help="Write into a prediction folder that already has predictions."),
    quiet: bool = _QUIET,
) -> None:
    """nnU-Net inference (nnUNetPredictor) on the held-out patients; score with `osteomet ct nnunet import`."""
    with _nnunet_errors():
        from osteomet.ct.nnunet.layout import NnunetLayout
        from osteomet.ct.nnunet.run import predict as run_predict

        layout = NnunetLayout.find(out, dataset_id)
        folder = run_predict(layout, output, input_dir=input_dir, configuration=configuration, folds=fold,
                             trainer=trainer, plans=plans, checkpoint=checkpoint, device=device,
                             disable_tta=disable_tta, num_processes=processes, overwrite=overwrite,
                             echo=_echo(quiet))
    console.print(f"predictions -> [bold]{folder}[/]; score them with `osteomet ct nnunet import {folder} "
                  f"--nnunet {out} --out RUN`")


@app.command("import")
def import_(
    predictions: Path = typer.Argument(..., help="Folder of nnU-Net predictions (<case>.nii.gz)."),
    nnunet: Path = typer.Option(..., "--nnunet", "-n", help="The nnU-Net working folder of the export."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder: <model>/masks/<patient_id>.nii.gz and "
                                                     "<model>/metrics.csv (the format of `osteomet ct segment "
                                                     "predict`)."),
    dataset_id: Optional[int] = _DATASET_ID,
    manifest: Optional[Path] = typer.Option(None, "--manifest", "-m", help="CT manifest for the CTs and reference "
                                                                           "masks (default: the paths of the export)."),
    model: str = typer.Option("nnunet", help="Model name in the per-patient table."),
    overwrite: bool = typer.Option(False, help="Replace masks imported into --out before."),
) -> None:
    """Check each prediction against the patient's CT, write it in the CT's geometry, score Dice/precision/recall."""
    with _nnunet_errors():
        from osteomet.ct.nnunet.importer import import_predictions

        n_files = len(list(predictions.glob("*.nii.gz"))) if predictions.is_dir() else 0
        with progress_bar("import", n_files) as advance:
            table = import_predictions(predictions, nnunet, out, dataset_id=dataset_id, model=model,
                                       manifest=manifest, overwrite=overwrite, progress=advance)
    console.print(f"{len(table)} masks -> [bold]{out / model / 'masks'}[/], scores -> "
                  f"[bold]{out / model / 'metrics.csv'}[/]")
    scored = table.dropna(subset=["dice"])
    for split, group in scored.groupby("split", sort=False):
        console.print(f"  {split:9s} n={len(group):3d}  mean Dice {group['dice'].mean():.3f}")
