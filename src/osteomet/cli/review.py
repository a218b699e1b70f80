"""``osteomet segment export-review / import-review``: the radiologist's round trip through 3D Slicer.

Mounted under ``osteomet segment`` (``cli/segment.py`` copies this app's commands). Heavy
imports stay inside the commands so ``osteomet --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from osteomet.cli._common import console, progress_bar, user_errors
from osteomet.layout import REVIEW_SHEET

app = typer.Typer(help="Radiologist review of the automatic tumour masks in 3D Slicer or ITK-SNAP.",
                  no_args_is_help=True)


def _note(message: str) -> None:
    console.print(f"[yellow]note[/]: {message}", highlight=False, soft_wrap=True)


@app.command("export-review")
def export_review_command(
    manifest: Path = typer.Option(..., "--manifest", "-m", help="bpMRI manifest (T2, DWI, ADC per patient)."),
    segdir: Path = typer.Option(..., "--segdir", "-s", help="Segmentation folder of `osteomet segment predict` (auto/)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Review folder (default: SEGDIR/review; import-review then needs --from)."),
    flagged: bool = typer.Option(False, "--flagged", help="Only the patients whose automatic mask the mask QC "
                                 "flagged (SEGDIR/qc/qc.csv, written by `run mri`) and that have no reviewed mask."),
) -> None:
    """Write T2/high-b/ADC on the T2 grid and each auto mask as a Slicer .seg.nrrd, plus a review sheet."""
    with user_errors():
        from osteomet.data.manifest import read_manifest
        from osteomet.mri.review import README_NAME, export_review

        cohort = read_manifest(manifest, kind="mri")
        if flagged:
            import pandas as pd

            from osteomet.data.manifest import Manifest
            from osteomet.data.masks import qc_folder
            from osteomet.errors import MissingInputError
            from osteomet.layout import QC_TABLE

            table = qc_folder(segdir) / QC_TABLE
            if not table.is_file():
                raise MissingInputError(f"{table}: no mask QC in {segdir}; `osteomet run mri` writes it after the "
                                        f"segmentation stage")
            qc = pd.read_csv(table, dtype={"patient_id": str})
            ids = set(qc.loc[qc["flagged"].astype(bool) & ~qc["reviewed"].astype(bool), "patient_id"])
            cohort = Manifest(kind="mri", records=[r for r in cohort if r.patient_id in ids], path=cohort.path)
            console.print(f"{len(cohort)} flagged patient(s) without a reviewed mask")
        with progress_bar("export review", len(cohort)) as advance:
            folder = export_review(cohort, segdir, out, progress=advance, log=_note)
    console.print(f"review folder: [bold]{folder}[/] (instructions in {README_NAME}, tick off {REVIEW_SHEET})")


@app.command("import-review")
def import_review_command(
    manifest: Path = typer.Option(..., "--manifest", "-m", help="bpMRI manifest (T2 grid of each patient)."),
    segdir: Path = typer.Option(..., "--segdir", "-s", help="Segmentation folder (auto/, review/)."),
    source: Optional[Path] = typer.Option(None, "--from", help="Folder with <patient>_reviewed.* files "
                                          "(default: SEGDIR/review)."),
    reviewer: str = typer.Option(..., "--reviewer", help="Who reviewed the masks (recorded in provenance.json)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace previously imported reviewed masks that "
                                   "differ (the old ones are kept as numbered versions)."),
) -> None:
    """Check the refined masks against each T2 grid and store them in SEGDIR/reviewed/ with provenance."""
    with user_errors():
        from osteomet.data.manifest import read_manifest
        from osteomet.mri.review import ReviewError, import_review

        cohort = read_manifest(manifest, kind="mri")
        try:
            with progress_bar("import review", len(cohort)) as advance:
                table = import_review(cohort, segdir, source, reviewer=reviewer, overwrite=overwrite, progress=advance)
        except ReviewError as exc:
            if exc.table is not None:
                _print_table(exc.table)
            raise
    _print_table(table)


def _print_table(table) -> None:  # noqa: ANN001 - a pandas DataFrame, imported lazily
    """Per-patient results, then the notes (hints for misnamed files) one per line."""
    from rich.table import Table

    def cell(value: object, fmt: str = "{}") -> str:
        return "" if value is None or value != value else fmt.format(value)  # None and NaN print blank

    shown = Table(title="review import")
    for column in ("patient", "status", "mask used", "Dice auto/reviewed", "added", "removed"):
        shown.add_column(column)
    notes = []
    for row in table.itertuples(index=False):
        status = f"[red]{row.status}[/]" if row.status == "error" else str(row.status)
        shown.add_row(str(row.patient_id), status, cell(row.source), cell(row.dice, "{:.3f}"),
                      cell(row.voxels_added, "{:.0f}"), cell(row.voxels_removed, "{:.0f}"))
        if cell(row.message) and row.status != "error":  # errors are listed by the error message itself
            notes.append(f"{row.patient_id}: {row.message}")
    console.print(shown)
    for note in notes:
        _note(note)
    counts = table["status"].value_counts()
    console.print(", ".join(f"{int(n)} {status}" for status, n in counts.items()))
