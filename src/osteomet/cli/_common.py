"""Console, progress bars, error reporting and the options the training commands share.

Nothing heavy is imported at module level (``osteomet --help`` must stay instant): the
helpers that need pandas, torch or the CT stack import them when called.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Annotated, Iterator, List, NoReturn, Optional

import typer

from osteomet.utils.progress import console, err_console, progress_bar, progress_bars  # noqa: F401  (re-exported)

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
    "--out", "-o", help="Run folder: <architecture>/checkpoints, settings.yaml, patients.csv.")]
ModelsToTrainOption = Annotated[Optional[List[str]], typer.Option(
    "--model", help="Architecture(s) to train (default: the config's).")]
TrainedArchitecturesOption = Annotated[Optional[List[str]], typer.Option(
    "--architecture", "-a", help="Only these trained architectures.")]
TrainCacheOption = Annotated[Optional[Path], typer.Option(
    help="Slice cache folder (default OUT/slices; share it between runs, detection and segmentation alike: "
         "each window gets its own folder inside).")]
PredictCacheOption = Annotated[Optional[Path], typer.Option(
    help="Slice cache folder (default OUT/slices; the training run's --cache reuses its slices).")]


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the package's input errors into a red message and exit code 2 (3: some patients failed), not a
    traceback."""
    from osteomet.errors import USER_ERRORS, describe_os_error

    try:
        yield
    except USER_ERRORS as exc:
        _report(str(exc), getattr(exc, "exit_code", 2))
    except OSError as exc:
        message = describe_os_error(exc)
        if message is None:
            raise
        _report(message)


def _report(message: str, code: int = 2) -> NoReturn:
    """The message as written: no console markup, so a ``[...]`` in it (a list, a file name) is kept."""
    from rich.text import Text

    err_console.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False, soft_wrap=True)
    raise typer.Exit(code) from None


@contextlib.contextmanager
def interruptible(out: Path, hint: str = "continue with the same command plus --resume") -> Iterator[None]:
    """Ctrl-C in a resumable command: say how to continue, exit 130, no traceback."""
    try:
        yield
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted[/]: {hint} ({out})")
        raise typer.Exit(130) from None


ResumeOption = Annotated[bool, typer.Option(
    "--resume", help="Continue an interrupted run in --out from its last epoch, with the settings recorded there "
                     "(--config is ignored).")]


def add_ct_train_command(app: typer.Typer, task: str, summary: str) -> None:
    """Register ``train`` on a CT slice-model group (``ct detect``, ``ct segment``): both take the same options."""

    @app.command("train", help=summary)
    def train(
        manifest: CTTrainManifestOption,
        out: CTRunOption,
        config: ConfigOption = "default",
        model: ModelsToTrainOption = None,
        cache: TrainCacheOption = None,
        device: DeviceOption = None,
        max_epochs: MaxEpochsOption = None,
        resume: ResumeOption = False,
    ) -> None:
        with user_errors():
            from osteomet.pipeline.ct_models import train_ct_task

            train_ct_task(task, manifest, out, config, models=model, cache=cache, device=device,
                          max_epochs=max_epochs, resume=resume)
        console.print(f"-> [bold]{out}[/]")
