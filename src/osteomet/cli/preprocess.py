"""``osteomet preprocess``: cached preprocessing stages."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from osteomet.cli._common import console, err_console, user_errors
from osteomet.utils.cores import resolve_jobs

app = typer.Typer(help="Channels on the T2 grid, z-scored and clipped; segmentation grid; tumour ROI (cached).",
                  no_args_is_help=True)


@app.command("mri")
def mri(
    manifest: Path = typer.Option(..., "--manifest", "-m", help="bpMRI manifest."),
    out: Path = typer.Option(..., "--out", "-o", help="Preprocessed folder (cases/, index.csv)."),
    seg_config: Optional[str] = typer.Option(None, "--seg-config", help="Segmentation preset or YAML whose seg_size to use."),
    roi_size: tuple[int, int, int] = typer.Option((64, 64, 32), help="Tumour ROI size x y z."),
    segdir: Optional[Path] = typer.Option(None, help="Segmentation folder: use reviewed/auto masks from it."),
    jobs: Optional[int] = typer.Option(None, min=1, help="Worker processes (default: every core, or $OSTEOMET_JOBS)."),
) -> None:
    """Preprocess every patient; unchanged inputs and settings are not processed again.

    Exit codes: 0 every patient processed or cached; 3 some patients failed (named, with the
    reason; the others are usable); 2 every patient failed.
    """
    with user_errors():
        from osteomet.pipeline.preprocess import preprocess_mri

        outcome, index = preprocess_mri(manifest, out, seg_config=seg_config, roi_size=roi_size, segdir=segdir,
                                        jobs=resolve_jobs(jobs))
    if outcome.skipped:
        console.print(f"[dim]up to date: inputs and settings unchanged since the last run ({out})[/]")
    counts = index["status"].value_counts().to_dict()
    console.print(f"{len(index)} patients: {counts.get('processed', 0)} processed, {counts.get('cached', 0)} cached, "
                  f"{counts.get('failed', 0)} failed -> [bold]{out}[/]")
    failed = index[index["status"] == "failed"]
    for row in failed.itertuples():
        err_console.print(f"[yellow]  {row.patient_id}: {row.error}[/]", highlight=False)
    if len(failed):
        raise typer.Exit(2 if len(failed) == len(index) else 3)
