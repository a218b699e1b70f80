"""The CT slice-model stages (detection and segmentation): slice cache, run folder, training loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, TypeVar

from pydantic import BaseModel

from osteomet.utils.progress import console, progress_bar

Settings = TypeVar("Settings", bound=BaseModel)


def prepare_ct_run(manifest: Path, out: Path, settings: Settings, architectures: list[str] | None,
                   cache: Path | None) -> tuple[Path, Settings]:
    """Read a CT manifest with lesion masks, cache its slices (progress bar) and record the run in ``out``.

    Returns (slice root, settings with the architectures to train).
    """
    from osteomet.ct.slices.run import prepare_slice_run
    from osteomet.data.manifest import read_manifest

    cohort = read_manifest(manifest, kind="ct", require=("lesion_mask",))
    with progress_bar("slices", len(cohort)) as advance:
        return prepare_slice_run(cohort, out, settings, architectures=architectures, cache=cache, on_patient=advance)


def train_each_architecture(root: Path, out: Path, settings: Settings, train: Callable, device: str | None,
                            describe: Callable[[Any], str] | None = None) -> dict[str, Any]:
    """Train the run's architectures in turn, each with its epoch progress bar (and a one-line result when
    ``describe`` is given); returns each architecture's training result."""
    results = {}
    for architecture in settings.architectures:
        with progress_bar(f"train {architecture}", settings.max_epochs) as advance:
            results[architecture] = train(root, out, settings, architecture, device=device, progress=advance)
        if describe is not None:
            console.print(f"{architecture}: {describe(results[architecture])}")
    return results

