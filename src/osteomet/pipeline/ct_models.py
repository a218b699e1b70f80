"""The CT slice-model stages (detection and segmentation): slice cache, run folder, training loop."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Callable, Literal, TypeVar

from pydantic import BaseModel

from osteomet.utils.progress import console, progress_bar

Settings = TypeVar("Settings", bound=BaseModel)
Task = Literal["detection", "segmentation"]


def task_trainer(task: Task) -> tuple[Callable[[str | Path | None], Any], Callable]:
    """(preset/YAML loader, per-architecture trainer) of a CT slice task."""
    if task == "detection":
        from osteomet.ct.detection.config import load_detection_config
        from osteomet.ct.detection.train import train_detector

        return load_detection_config, train_detector
    from osteomet.ct.segmentation.config import load_segmentation_config
    from osteomet.ct.segmentation.train import train_segmenter

    return load_segmentation_config, train_segmenter


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


def train_ct_task(task: Task, manifest: Path, out: Path, config: str | Path, *, models: list[str] | None = None,
                  cache: Path | None = None, device: str | None = None, max_epochs: int | None = None,
                  resume: bool = False) -> dict[str, Any]:
    """``ct detect train`` / ``ct segment train``: settings (or the run's own with ``resume``), slice cache,
    then each architecture with a progress bar and a one-line result."""
    import pandas as pd

    from osteomet.config import load_training_config
    from osteomet.ct.slices.run import resumed_settings
    from osteomet.layout import CLASS_BALANCE

    load, train = task_trainer(task)
    settings = load_training_config(load, config, max_epochs)
    if resume:
        settings = resumed_settings(out, settings, max_epochs)
    root, settings = prepare_ct_run(manifest, out, settings, models, cache)
    if task == "detection":
        console.print(pd.read_csv(out / CLASS_BALANCE).to_string(index=False))
    return train_each_architecture(root, out, settings, partial(train, resume=resume), device,
                                   lambda result: result.describe(settings.weights))


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

