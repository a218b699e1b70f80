"""``osteomet predict``: new patients through a finished study's models."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from osteomet.cli._common import console, err_console, user_errors

app = typer.Typer(help="Apply a finished study's models to a new patient.", no_args_is_help=True)


@app.command("mri")
def mri(
    model: Path = typer.Option(..., "--model", help="Run directory of `osteomet run mri` (the model bundle)."),
    t2: Path = typer.Option(..., "--t2", help="T2-weighted: DICOM series folder or NIfTI/MHA/NRRD file."),
    dwi: Path = typer.Option(..., "--dwi", help="High-b DWI: DICOM series folder or volume file."),
    adc: Path = typer.Option(..., "--adc", help="ADC map: DICOM series folder or volume file."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for result.json/.md, the mask and Grad-CAM."),
    clinical: Optional[str] = typer.Option(None, help="e.g. age=71,psa=40,gleason=8,isup=4,hematuria=0,"
                                           "leukocyturia=1 (missing ones are allowed and reported)."),
    mask: Optional[Path] = typer.Option(None, help="Tumour mask on the T2 grid (default: the study's UNETR)."),
    patient_id: str = typer.Option("patient", "--id", help="Name of the patient in the outputs."),
    centre: Optional[str] = typer.Option(None, help="Centre (scanner site) of the patient, as named in the study: its "
                                         "features are mapped by the study's ComBat fit; without it, used as extracted."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda (default: cuda when present)."),
    t2_series: Optional[str] = typer.Option(None, "--t2-series", help="SeriesInstanceUID of the T2 when its DICOM "
                                            "folder holds several series."),
    dwi_series: Optional[str] = typer.Option(None, "--dwi-series", help="SeriesInstanceUID of the DWI when its DICOM "
                                             "folder holds several series."),
    adc_series: Optional[str] = typer.Option(None, "--adc-series", help="SeriesInstanceUID of the ADC when its DICOM "
                                             "folder holds several series."),
) -> None:
    """Bone-metastasis probability of one patient: mask, ROI, radiomics, deep features, the fused decision."""
    with user_errors():
        from osteomet.pipeline.predict_mri import parse_clinical, predict_mri

        result = predict_mri(model, out, t2=t2, dwi=dwi, adc=adc, mask=mask, clinical=parse_clinical(clinical),
                             patient_id=patient_id, centre=centre, device=device,
                             series={"t2": t2_series, "dwi": dwi_series, "adc": adc_series},
                             log=lambda line: err_console.print(f"[dim]{line}[/]"))
    models = ", ".join(f"{k} {v:.3f}" for k, v in result["models"].items())
    console.print(f"[bold]{result['decision']}[/]: probability {result['probability']:.3f} (threshold "
                  f"{result['threshold']:.3f}; {models})")
    from rich.markup import escape

    verdict = result.get("applicability", "not assessed")
    reasons = result.get("applicability_reasons") or []
    colour = {"within": "green", "outside": "red"}.get(verdict, "yellow")
    note = (result.get("applicability_details") or {}).get("note")
    console.print(f"applicability: [{colour}]{verdict}[/]" + (f" ({len(reasons)} check(s) failed)" if reasons else "")
                  + (f" ({escape(note)})" if note and verdict == "not assessed" else ""), highlight=False)
    for reason in reasons[:5]:
        console.print(f"  - {escape(reason)}", highlight=False)
    if len(reasons) > 5:
        console.print(f"  ... and {len(reasons) - 5} more in result.md", highlight=False)
    if result["missing_clinical"]:
        console.print(f"[yellow]missing clinical values[/]: {', '.join(result['missing_clinical'])}")
        for statement in (result.get("missing_values") or {}).get("statements") or []:
            console.print(f"  - {escape(statement)}", highlight=False)
    fusion = (result.get("explanations") or {}).get("fusion")
    if fusion:
        console.print("largest contributions (fusion, log-odds): "
                      + ", ".join(f"{t['feature']} {t['shap']:+.2f}" for t in fusion["top"][:5]))
    console.print(f"-> [bold]{out / 'result.md'}[/]")


@app.command("ct")
def ct(
    model: Path = typer.Option(..., "--model", help="Run directory of `osteomet run ct`."),
    ct_image: Path = typer.Option(..., "--ct", help="CT in HU: DICOM series folder or NIfTI/MHA/NRRD file."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for result.json/.md, slice scores, mask, lesions."),
    bones: Optional[Path] = typer.Option(None, "--bones", help="TotalSegmentator bone map on the CT grid (bone "
                                         "identity and weight-bearing; without it they are unavailable)."),
    patient_id: str = typer.Option("patient", "--id", help="Name of the patient in the outputs."),
    segmenter: Optional[str] = typer.Option(None, help="Segmenter to use (default: the best on validation)."),
    series: Optional[str] = typer.Option(None, "--series", help="SeriesInstanceUID when the DICOM folder holds "
                                         "several series."),
    device: Optional[str] = typer.Option(None, help="cpu or cuda (default: cuda when present)."),
) -> None:
    """Slice detection, the lesion mask and the per-lesion table of one new CT."""
    with user_errors():
        from osteomet.pipeline.predict_ct import predict_ct

        result = predict_ct(model, out, ct=ct_image, bones=bones, patient_id=patient_id, segmenter=segmenter,
                            series_uid=series, device=device,
                            log=lambda line: err_console.print(f"[dim]{line}[/]", highlight=False))
    console.print((out / "result.md").read_text(encoding="utf-8"), highlight=False)
    console.print(f"-> [bold]{out}[/] ({result['seconds']['total']:.1f} s)")
