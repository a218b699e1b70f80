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
                            describe: Callable[[Any], str] | None = None, *, task: Task | None = None,
                            resume: bool = False, jobs: int = 1, scheduler: str | None = None,
                            threads: int | None = None) -> dict[str, Any]:
    """Train the run's architectures, each with its epoch progress bar (and a one-line result when ``describe``
    is given); returns each architecture's training result.

    In turn in this process when ``jobs`` is 1 (or one architecture) and no ``scheduler`` is given; otherwise each
    architecture is one Dask task (:func:`train_architecture_task`, which needs ``task`` and ``resume`` instead of
    ``train``), on a local cluster of ``jobs`` workers or on the cluster at ``scheduler``, and writes its
    folder in ``out`` as here. Each architecture seeds its own weights and sampling, and trains on
    ``threads`` torch threads wherever it runs (default: this process's count), so the networks are the
    same either way.
    """
    if scheduler is None and (jobs <= 1 or len(settings.architectures) <= 1):  # no local cluster for one task
        return _train_here(root, out, settings, train, device, describe, threads)
    if task is None:
        raise ValueError("train_each_architecture: jobs > 1 or a scheduler needs the task's name")
    import torch

    from osteomet.utils.dask_tasks import dask_map

    tasks = [{"task": task, "root": str(root), "out": str(out), "settings": settings.model_dump(mode="json"),
              "architecture": architecture, "device": device, "resume": resume,
              "threads": threads or torch.get_num_threads()} for architecture in settings.architectures]
    results = {}
    with progress_bar(f"train {task} ({len(tasks)} on Dask)", len(tasks)) as advance:
        for architecture, result in dask_map(train_architecture_task, tasks, jobs=jobs, scheduler=scheduler):
            results[architecture] = result
            advance()
            if describe is not None:
                console.print(f"{architecture}: {describe(result)}")
    return {architecture: results[architecture] for architecture in settings.architectures}


def _train_here(root: Path, out: Path, settings: Settings, train: Callable, device: str | None,
                describe: Callable[[Any], str] | None, threads: int | None) -> dict[str, Any]:
    """The architectures in turn in this process (on ``threads`` torch threads when given)."""
    results = {}
    for architecture in settings.architectures:
        with progress_bar(f"train {architecture}", settings.max_epochs) as advance, _threads(threads):
            results[architecture] = train(root, out, settings, architecture, device=device, progress=advance)
        if describe is not None:
            console.print(f"{architecture}: {describe(results[architecture])}")
    return results


def _threads(threads: int | None) -> Any:
    """Torch on ``threads`` threads for a block (nothing changed when None)."""
    import contextlib

    if threads is None:
        return contextlib.nullcontext()
    from osteomet.utils.torch import torch_threads

    return torch_threads(threads)


def train_architecture_task(task: dict[str, Any]) -> tuple[str, Any]:
    """One architecture's training as a Dask task: plain arguments in (paths, the settings as a dict), its run
    folder written in ``out`` as a local run writes it; returns (architecture, training result)."""
    _, train = task_trainer(task["task"])
    settings = settings_model(task["task"]).model_validate(task["settings"])
    with _threads(task["threads"]):
        result = train(Path(task["root"]), Path(task["out"]), settings, task["architecture"], device=task["device"],
                       resume=task["resume"])
    return task["architecture"], result


def settings_model(task: Task) -> type[BaseModel]:
    """The settings class of a CT slice task (what a task's dict is validated back into)."""
    if task == "detection":
        from osteomet.ct.detection.config import DetectionConfig

        return DetectionConfig
    from osteomet.ct.segmentation.config import CTSegmentationConfig

    return CTSegmentationConfig
