"""Grid search over depth x learning rate x optimiser, judged on the validation cohort only.

Output folder: ``settings.yaml`` (the settings), ``patients.csv`` (split and mask source of
every patient), ``configs/<name>/`` (one run folder per configuration, see
:mod:`osteomet.mri.classifier.train`), ``grid.csv`` (validation AUC with DeLong CI and
accuracy per configuration), ``heatmap.png`` and ``winner.json`` (the configuration later
stages use). Labels are taken from a :class:`LabelGuard` in this process: training labels to
fit, validation labels to stop early and to choose, nothing else.

Parallelism follows the radiomics stage: ``jobs == 1`` trains in this process; ``jobs > 1``
starts a ``dask.distributed.LocalCluster`` of single-threaded worker processes; every
configuration trains on one torch thread wherever it runs, so the grid's numbers do not
depend on ``jobs``; ``scheduler`` sends the same tasks to an existing Dask cluster whose workers
see the same paths. An interrupted grid resumes: finished configurations (``result.json``)
are not trained again and unfinished ones continue from their ``last.pt``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from osteomet.config import dump_config, write_settings
from osteomet.errors import InputError, OutputExistsError
from osteomet.layout import GRID_CONFIGS, GRID_TABLE, PATIENTS, SETTINGS, WINNER
from osteomet.mri.classifier.config import ClassifierConfig
from osteomet.mri.classifier.data import split_ids
from osteomet.mri.classifier.labels import LabelGuard
from osteomet.mri.classifier.train import RunSpec, read_result, train_run
from osteomet.training.checkpoint import run_started
from osteomet.utils.figures import pyplot, save_figure
from osteomet.utils.files import json_ready, write_json_atomic, write_text_atomic

COLUMNS = ["name", "depth", "optimizer", "learning_rate", "val_auc", "val_auc_low", "val_auc_high", "val_acc",
           "val_score", "n_val", "n_val_positive", "best_epoch", "epochs_run", "stopped_early", "seconds"]


def grid_specs(config: ClassifierConfig) -> list[RunSpec]:
    """Every configuration, in the order of the YAML lists (depth, then optimiser, then learning rate)."""
    return [RunSpec(d, o, lr) for d, o, lr in itertools.product(config.depths, config.optimizers,
                                                                config.learning_rates)]


def run_dir_of(out: str | Path, spec: RunSpec) -> Path:
    return Path(out) / GRID_CONFIGS / spec.name


def _train_task(task: dict[str, Any]) -> dict[str, Any]:
    """One configuration in a worker or in this process, always on one torch thread.

    CPU float sums depend on the thread count, so one thread everywhere makes a grid's
    numbers (and its winner) the same whether it ran with --jobs 1, --jobs N or on a cluster
    (measured: with 2 threads in-process against 1 per worker, 8-epoch validation AUCs
    differed). One thread is also what a worker of the pool gets.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_dir = Path(task["run_dir"])
        result = train_run(task["preprocessed"], run_dir, ClassifierConfig.model_validate(task["config"]),
                           RunSpec(**task["spec"]), train_labels=task["train_labels"], val_labels=task["val_labels"],
                           resume=run_started(run_dir), device=task["device"],
                           on_epoch=task.get("on_epoch"))
    finally:
        torch.set_num_threads(previous)
    return asdict(result)


def _run(tasks: list[dict[str, Any]], jobs: int, scheduler: str | None) -> Iterator[dict[str, Any]]:
    """Yield results as configurations finish, here or on a Dask cluster (no epoch callback there)."""
    from osteomet.utils.dask_tasks import dask_map

    if jobs > 1 or scheduler is not None:
        tasks = [{**t, "on_epoch": None} for t in tasks]
    return dask_map(_train_task, tasks, jobs=jobs, scheduler=scheduler)


def open_grid(out: str | Path, config: ClassifierConfig, *, resume: bool) -> Path:
    """Create the grid folder, or reopen it with ``resume`` when it was started with the same settings."""
    out = Path(out)
    saved = out / SETTINGS
    text = dump_config(config)
    if saved.exists():
        if not resume:
            raise OutputExistsError(f"{out}: holds a classifier grid already; pass --resume to continue it or use "
                                    f"a new folder")
        if saved.read_text(encoding="utf-8") != text:
            raise InputError(f"{out}: the grid there was started with other settings ({saved}); resume it with the "
                             f"same config or use a new folder")
    elif out.exists() and any(out.iterdir()):
        raise OutputExistsError(f"{out}: folder is not empty and holds no classifier grid; choose a new --out")
    out.mkdir(parents=True, exist_ok=True)
    write_settings(out, config)
    return out


def select_winner(table: pd.DataFrame) -> pd.Series:
    """Highest selection score (the validation AUC, smoothed when the settings say so); ties go to
    the first configuration in grid order (deterministic)."""
    usable = table.dropna(subset=["val_score"])
    if usable.empty:
        raise InputError("no configuration of the grid produced a validation AUC (every run diverged); "
                         "lower the learning rates")
    return usable.loc[usable["val_score"].idxmax()]


def selection_rule(config: ClassifierConfig) -> str:
    if config.selection_smoothing == 0:
        rule = "highest validation AUC"
    else:
        rule = f"highest validation AUC smoothed over epochs (moving average, weight {config.selection_smoothing:g})"
    if config.min_epochs:
        rule += f" from epoch {config.min_epochs} on"
    return rule + " (ties: first in grid order)"


def run_grid(preprocessed: str | Path, out: str | Path, config: ClassifierConfig, guard: LabelGuard,
             patients: pd.DataFrame, *, jobs: int = 1, scheduler: str | None = None, resume: bool = False,
             device: str | None = None, on_config: Callable[[dict], None] | None = None,
             on_epoch: Callable[[int, dict], None] | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Train every configuration not finished yet, then write grid.csv, heatmap.png and winner.json.

    ``patients`` is :func:`osteomet.mri.classifier.data.roi_patients`' table; ``on_config`` is
    called with each finished configuration's result, ``on_epoch`` (in-process runs only)
    after every epoch.
    """
    out = open_grid(out, config, resume=resume)
    write_text_atomic(out / PATIENTS, patients.to_csv(index=False))
    train_ids, val_ids = split_ids(patients, "train"), split_ids(patients, "val")
    if not train_ids or not val_ids:
        raise InputError(f"{preprocessed}: need training and validation patients with ROI crops "
                         f"(got {len(train_ids)} and {len(val_ids)})")
    train_labels = {k: int(v) for k, v in guard.labels("train", "fit", train_ids).items()}
    val_labels = {k: int(v) for k, v in guard.labels("val", "select", val_ids).items()}
    specs = grid_specs(config)
    results: dict[str, dict[str, Any]] = {}
    tasks = []
    for spec in specs:
        done = read_result(run_dir_of(out, spec))
        if done is not None:
            results[spec.name] = asdict(done)
            if on_config:
                on_config(results[spec.name])
            continue
        tasks.append({"preprocessed": str(preprocessed), "run_dir": str(run_dir_of(out, spec)),
                      "config": config.model_dump(mode="json"), "spec": asdict(spec), "train_labels": train_labels,
                      "val_labels": val_labels, "device": device, "on_epoch": on_epoch})
    for result in _run(tasks, jobs, scheduler):
        results[result["name"]] = result
        if on_config:
            on_config(result)
    table = pd.DataFrame([results[s.name] for s in specs], columns=COLUMNS)
    write_text_atomic(out / GRID_TABLE, table.to_csv(index=False))
    winner = select_winner(table)
    record = {**{k: json_ready(winner[k]) for k in COLUMNS}, "run": str(Path(GRID_CONFIGS) / winner["name"]),
              "rule": selection_rule(config),
              "n_train": len(train_ids)}
    write_json_atomic(out / WINNER, record)
    save_heatmap(table, out / "heatmap.png")
    return table, record


def save_heatmap(table: pd.DataFrame, path: Path) -> Path:
    """Selection score per configuration: depths as rows, optimiser x learning rate as columns."""
    plt = pyplot()
    from matplotlib.patches import Rectangle

    frame = table.assign(column=[f"{o}\n{lr:g}" for o, lr in zip(table["optimizer"], table["learning_rate"])])
    pivot = frame.pivot(index="depth", columns="column", values="val_score")
    pivot = pivot.loc[list(dict.fromkeys(frame["depth"])), list(dict.fromkeys(frame["column"]))]  # grid order
    fig, ax = plt.subplots(figsize=(1.0 + 0.9 * pivot.shape[1], 1.2 + 0.6 * pivot.shape[0]), dpi=120)
    values = pivot.to_numpy(dtype=float)
    low = min(0.5, float(np.nanmin(values))) if np.isfinite(values).any() else 0.5
    image = ax.imshow(values, cmap="viridis", vmin=low, vmax=1.0, aspect="auto")
    if np.isfinite(values).any():  # the winner: highest AUC, first in grid order on ties (row-major = grid order)
        best = np.unravel_index(np.nanargmax(values), values.shape)
        ax.add_patch(Rectangle((best[1] - 0.5, best[0] - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    for (i, j), value in np.ndenumerate(values):
        ax.text(j, i, "n/a" if pd.isna(value) else f"{value:.3f}", ha="center", va="center", fontsize=7,
                color="white" if np.isnan(value) or value < 0.8 else "black")
    ax.set_xticks(range(pivot.shape[1]), pivot.columns, fontsize=7)
    ax.set_yticks(range(pivot.shape[0]), [f"ResNet{d}" for d in pivot.index], fontsize=8)
    smoothed = not np.allclose(table["val_score"], table["val_auc"], equal_nan=True)
    ax.set_title("validation AUC, smoothed over epochs" if smoothed else "validation AUC", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.05)
    return save_figure(fig, path, tight_bbox=True)

