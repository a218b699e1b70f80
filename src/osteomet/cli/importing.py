"""``osteomet import``: study manifests from what data arrives as (a DICOM export, the PI-CAI archive)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from osteomet.cli._common import console, err_console, user_errors

app = typer.Typer(help="Build a study manifest from a DICOM export or the PI-CAI archive.", no_args_is_help=True)



@app.command("dicom")
def dicom(
    root: Path = typer.Argument(..., help="Folder of the DICOM export (any nesting, files with or without .dcm)."),
    out: Path = typer.Option(..., "--out", "-o", help="New or empty folder for manifest.csv, series.csv, summary.md "
                             "(never inside ROOT)."),
    clinical: Optional[Path] = typer.Option(None, "--clinical", help="Clinical CSV joined by patient_id (the ids "
                                            "written) or dicom_patient_id (the DICOM PatientID, not written)."),
    mapping: Optional[Path] = typer.Option(None, "--mapping", help="picai_prep dcm2mha mapping JSON; its entries "
                                           "outrank the rules (settle ambiguous patients with SeriesInstanceUID)."),
    rules: Optional[Path] = typer.Option(None, "--rules", help="YAML of extra series rules, checked before the "
                                         "shipped ones."),
    pseudonyms: Optional[Path] = typer.Option(None, "--pseudonyms", help="CSV with dicom_patient_id,patient_id: the "
                                              "ids to write (patients not in it are left out)."),
    keep_patient_id: bool = typer.Option(False, "--keep-patient-id", help="Write the DICOM PatientID as patient_id "
                                         "(default: pseudonyms P0001... in PatientID order)."),
    convert: Optional[str] = typer.Option(None, "--convert", help="Write volumes (nifti or mha) into STUDY/images "
                                          "instead of naming the DICOM folders (never inside ROOT)."),
    mapping_only: bool = typer.Option(False, "--mapping-only", help="The roles the mapping names are chosen by the "
                                      "mapping alone, as in picai_prep (default: the rules fill in)."),
    strict: bool = typer.Option(False, "--strict", help="Exit with code 2 when a patient is missing a modality or "
                                "ambiguous (the files are written either way)."),
    jobs: Optional[int] = typer.Option(None, min=1, help="Processes reading headers (default: all CPUs)."),
) -> None:
    """Scan a DICOM export, classify every series (T2, high-b DWI, ADC, CT...) and write a study manifest."""
    with user_errors():
        from osteomet.pipeline.import_dicom import import_dicom

        summary = import_dicom(root, out, clinical=clinical, mapping=mapping, rules=rules, pseudonyms=pseudonyms,
                               keep_patient_id=keep_patient_id, convert=convert, mapping_only=mapping_only,
                               strict=strict, jobs=jobs, log=lambda line: err_console.print(f"[dim]{line}[/]",
                                                                                            highlight=False))
    for line in summary.lines():
        console.print(line, highlight=False)
    console.print(f"-> [bold]{out}[/]")


@app.command("picai")
def picai(
    root: Path = typer.Argument(..., help="Folder of the PI-CAI archive (picai_public_images_fold*): "
                                "<patient_id>/<patient_id>_<study_id>_{t2w,adc,hbv}.mha."),
    out: Path = typer.Option(..., "--out", "-o", help="New or empty folder for the study manifest."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Delineations: a folder of <pid>_<sid>.nii.gz or a "
                                          "picai_labels checkout (human_expert/resampled first)."),
    label: str = typer.Option("case_csPCa", "--label", help="Label: a yes/no marksheet column (case_csPCa) or a CSV "
                              "of your own labels (patient_id, label[, study_id]), e.g. bone metastasis."),
    marksheet: Optional[Path] = typer.Option(None, "--marksheet", help="marksheet.csv when it is neither in ROOT nor "
                                             "in the picai_labels checkout above --labels."),
    convert: Optional[str] = typer.Option(None, "--convert", help="Write the volumes as nifti or mha into "
                                          "STUDY/images (default: the manifest names the archive's files)."),
) -> None:
    """Manifest of the PI-CAI archive (T2W, HBV, ADC per case), labels and clinical values joined."""
    with user_errors():
        from osteomet.pipeline.import_picai import import_picai

        result = import_picai(root, out, labels=labels, label=label, convert=convert, marksheet=marksheet,
                              log=lambda line: err_console.print(f"[dim]{line}[/]", highlight=False))
    for key, value in (result or {}).items():
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            console.print(f"{key}: {value}", highlight=False)
    console.print(f"-> [bold]{out}[/]")
