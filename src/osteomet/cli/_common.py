"""Console, progress bars, error reporting and the options the training commands share.

Nothing heavy is imported at module level (``osteomet --help`` must stay instant): the
helpers that need pandas, torch or the CT stack import them when called.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    Callable,
    Iterator,
    List,
    Optional,
    TypeVar,
)

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

if TYPE_CHECKING:
    from pydantic import BaseModel

    from osteomet.data.manifest import Manifest

Settings = TypeVar("Settings", bound="BaseModel")

console = Console()
err_console = Console(stderr=True)

# Options of the model-training commands (MRI UNETR, CT detection, CT segmentation).
ConfigOption = Annotated[str, typer.Option(help="Preset ('default', 'tiny') or YAML file.")]
DeviceOption = Annotated[Optional[str], typer.Option(help="cpu or cuda (default: cuda when present).")]
MaxEpochsOption = Annotated[Optional[int], typer.Option(help="Override the config's max_epochs.")]

# Options of the CT slice-model commands (detection, segmentation).
CTTrainManifestOption = Annotated[Path, typer.Option(
    "--manifest", "-m", help="CT manifest with ct and lesion_mask (split optional).")]
CTPredictManifestOption = Annotated[Path, typer.Option(
    "--manifest", "-m", help="CT manifest (lesion_mask optional: metrics need it).")]
CTRunOption = Annotated[Path, typer.Option(
    "--out", "-o", help="Run folder: <architecture>/checkpoints, config.yaml, patients.csv.")]
ModelsToTrainOption = Annotated[Optional[List[str]], typer.Option(
    "--model", help="Architecture(s) to train (default: the config's).")]
TrainedArchitecturesOption = Annotated[Optional[List[str]], typer.Option(
    "--architecture", "-a", help="Only these trained architectures.")]
TrainCacheOption = Annotated[Optional[Path], typer.Option(
    help="Slice cache folder (default OUT/slices; share it between runs).")]
PredictCacheOption = Annotated[Optional[Path], typer.Option(help="Slice cache folder (default OUT/slices).")]


@contextlib.contextmanager
def progress_bar(description: str, total: int) -> Iterator[Callable[[], None]]:
    """A rich progress bar; yields a no-argument ``advance`` callback for the workers' loop."""
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=False) as progress:
        task = progress.add_task(description, total=total)
        yield lambda: progress.advance(task)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the package's input errors into a red message and exit code 2, not a traceback."""
    from osteomet.errors import USER_ERRORS

    try:
        yield
    except USER_ERRORS as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def load_settings(loader: Callable[[str], Settings], source: str, max_epochs: int | None) -> Settings:
    """A training config from its preset or YAML file, with ``--max-epochs`` applied."""
    settings = loader(source)
    if max_epochs is not None:
        settings = settings.model_copy(update={"max_epochs": max_epochs})
    return settings


def prepare_ct_run(manifest: Path, out: Path, settings: Settings, architectures: list[str] | None,
                   cache: Path | None) -> tuple[Path, Settings]:
    """Read a CT manifest with lesion masks, cache its slices (progress bar) and record the run in ``out``.

    Returns (slice root, settings with the architectures to train).
    """
    from osteomet.ct.slice_run import prepare_slice_run
    from osteomet.data.manifest import read_manifest

    cohort = read_manifest(manifest, kind="ct", require=("lesion_mask",))
    with progress_bar("slices", len(cohort)) as advance:
        return prepare_slice_run(cohort, out, settings, architectures=architectures, cache=cache, on_patient=advance)


def train_each_architecture(root: Path, out: Path, settings: Settings, train: Callable, device: str | None,
                            describe: Callable[[Any], str]) -> None:
    """Train the run's architectures in turn, each with its epoch progress bar and a one-line result."""
    for architecture in settings.architectures:
        with progress_bar(f"train {architecture}", settings.max_epochs) as advance:
            result = train(root, out, settings, architecture, device=device, progress=advance)
        console.print(f"{architecture}: {describe(result)}")


def cache_ct_slices(cohort: "Manifest", cache: Path, slice_config) -> Path:
    """Cache the slices of every patient with the run's slice settings (progress bar); returns ``cache``."""
    from osteomet.ct.slice_cache import cache_cohort

    with progress_bar("slices", len(cohort)) as advance:
        cache_cohort(cohort, cache, slice_config, progress=advance)
    return cache
