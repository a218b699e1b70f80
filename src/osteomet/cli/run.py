"""``osteomet run``: a whole study, every stage from the manifest to the evaluation."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from osteomet.cli._common import console, err_console, interruptible, user_errors

#: Help of ``--scheduler`` (run mri, run ct and demo).
SCHEDULER_HELP = ("Dask scheduler address (tcp://HOST:PORT): the parallel stages run on that cluster, whose workers "
                  "see the same paths (results equal a local run's; docs/scaling.md).")

app = typer.Typer(help="Run a whole study (stages already done with the same inputs and settings are skipped).",
                  no_args_is_help=True)


@app.command("mri")
def mri(
    manifest: Path = typer.Option(..., "--manifest", "-m", help="bpMRI manifest (split optional: drawn 6:1:3 by "
                                  "patient within the internal centres, the external centre held out)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory (created, or continued)."),
    config: str = typer.Option("default", help="'default' (the published method), 'tiny' (CPU trial) or a "
                               "study.yaml."),
    jobs: Optional[int] = typer.Option(None, min=1, help="Override the config's worker processes."),
    device: Optional[str] = typer.Option(None, help="Override the config's device (cpu, cuda)."),
    scheduler: Optional[str] = typer.Option(None, help=SCHEDULER_HELP),
) -> None:
    """The bpMRI study: split, preprocessing, UNETR masks, radiomics, 3D-ResNet grid, clinical and fusion models,
    evaluation. Interrupt it any time; the same command continues where it stopped."""
    with user_errors():
        from osteomet.pipeline.run_mri import run_mri, summary_table
        from osteomet.pipeline.study import load_study_config, override_study

        settings = override_study(load_study_config(config), jobs=jobs, device=device, scheduler=scheduler)
        with interruptible(out, "rerun the same command to continue"):
            record = run_mri(manifest, out, settings, log=lambda line: err_console.print(f"[dim]{line}[/]"))
    from rich.table import Table

    table = summary_table(record["metrics"])
    view = Table(title="AUC (DeLong 95% CI)")
    view.add_column("model")
    for cohort in table.columns:
        view.add_column(str(cohort))
    for model, row in table.iterrows():
        view.add_row(str(model), *[str(v) for v in row])
    console.print(view)
    console.print(f"{len(record['stages'])} stages in {record['seconds']:.0f} s -> [bold]{out}[/]")


@app.command("ct")
def ct(
    manifest: Path = typer.Option(..., "--manifest", "-m", help="CT manifest with ct, lesion_mask and (optional) "
                                  "bone_map (split optional: drawn 6:1:3 by patient, stratified by lesion presence)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run directory (created, or continued)."),
    config: str = typer.Option("default", help="'default' (the published models, for a GPU), 'tiny' (CPU trial) "
                               "or a ct_study.yaml."),
    jobs: Optional[int] = typer.Option(None, min=1, help="Override the config's worker processes (the "
                                       "architectures of a task train side by side)."),
    device: Optional[str] = typer.Option(None, help="Override the config's device (cpu, cuda)."),
    scheduler: Optional[str] = typer.Option(None, help=SCHEDULER_HELP),
) -> None:
    """The CT study: split, slice detectors, lesion segmenters, per-lesion analysis and radiomics ICC of every
    segmenter. Interrupt it any time; the same command continues where it stopped."""
    with user_errors():
        from osteomet.pipeline.ct_study import load_ct_study_config
        from osteomet.pipeline.run_ct import run_ct

        settings = _override_ct(load_ct_study_config(config), jobs=jobs, device=device, scheduler=scheduler)
        with interruptible(out, "rerun the same command to continue"):
            result = run_ct(manifest, out, settings, log=lambda line: err_console.print(f"[dim]{line}[/]"))
    for key, value in result.items():
        if key != "stages":
            console.print(f"{key}: {value}")
    console.print(f"{len(result['stages'])} stages -> [bold]{out}[/]")


def _override_ct(settings, **values: object):
    """The CT study settings with the command line's options, validated like the YAML values (named on error)."""
    from pydantic import ValidationError

    from osteomet.config import ConfigError

    update = {key: value for key, value in values.items() if value is not None}
    if not update:
        return settings
    try:
        return type(settings).model_validate({**settings.model_dump(), **update})
    except ValidationError as exc:
        problems = "; ".join(f"--{e['loc'][0]} {update.get(str(e['loc'][0]))}: "
                             + ("not a device (cpu, cuda, cuda:N, mps)" if e["loc"][0] == "device" else e["msg"].removeprefix("Value error, "))
                             for e in exc.errors())
        raise ConfigError(problems) from None
