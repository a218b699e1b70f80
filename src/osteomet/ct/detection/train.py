"""Training of one slice classifier on square bone crops: balanced slices, early stopping on validation AUC.

Inputs: each slice cropped to the patient's bone region at the CT's own pixel size, padded
to a square and shrunk to ``input_size`` only when larger
(:class:`osteomet.ct.slice_inputs.SquareSlices`), with ``context_slices`` neighbours as extra
channels. Each epoch draws ``slices_per_epoch`` training slices, ``positive_fraction`` of
them lesion slices (drawn with replacement when there are fewer): lesion slices are about 4%
of a whole-body scan, and a classifier fed them in that proportion learns "no lesion".

Run folder per architecture (``RUN/<architecture>/``): ``history.csv`` (per epoch: loss,
validation AUC, seconds), ``checkpoints/best.pt`` (weights at the best validation AUC;
tensors only, loaded with ``weights_only=True``), ``checkpoints/last.pt`` (everything
``--resume`` needs) and ``threshold.json``: the Youden threshold of the best epoch's
validation slice probabilities. It is chosen on validation patients only and applied
unchanged to the test patients, at slice level and at patient level (patient score = max
over its slices, so a patient is positive exactly when one of its slices is).

Determinism: the slices drawn and the flips depend only on seed and epoch, so a CPU rerun
(or a resumed run) gives the same weights.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from osteomet.ct.detection.config import DetectionConfig
from osteomet.ct.detection.models import build_classifier
from osteomet.ct.slice_cache import SliceStore
from osteomet.ct.slice_dataset import check_patient_split, read_index
from osteomet.ct.slice_inputs import SquareSlices, random_affine
from osteomet.ct.slice_run import labelled_split, prepare_slice_run
from osteomet.ct.train_state import save_last, start_or_resume
from osteomet.errors import InputError
from osteomet.utils.files import write_json_atomic
from osteomet.utils.torch import (
    best_checkpoint,
    epoch_rng,
    load_weights,
    pick_device,
    save_state,
    seed_weights,
    train_step,
    write_history,
)


@dataclass
class DetectorResult:
    run_dir: Path
    architecture: str
    best_auc: float
    best_epoch: int
    threshold: float
    epochs_run: int
    stopped_early: bool
    history: pd.DataFrame
    seconds: float


def square_slices(slices_root: str | Path, config: DetectionConfig) -> SquareSlices:
    """The classifier inputs of a slice cache, as this config fits them."""
    return SquareSlices(SliceStore(slices_root), config.input_size, config.context_slices,
                        bone_only_mm=config.bone_only_mm, margin_mm=config.slices.crop_margin_mm, max_zoom=config.max_zoom)


def slice_probabilities(model: torch.nn.Module, inputs: SquareSlices, table: pd.DataFrame, batch_size: int,
                        device: torch.device) -> np.ndarray:
    """Lesion probability of every (patient_id, slice) row of ``table``, in its order."""
    model.eval()
    out = []
    pids, ks = table["patient_id"].to_numpy(), table["slice"].to_numpy()
    with torch.no_grad():
        for start in range(0, len(table), batch_size):
            x = torch.from_numpy(inputs.batch(pids[start:start + batch_size], ks[start:start + batch_size]))
            out.append(torch.sigmoid(model(x.to(device)).float()).reshape(-1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def _labelled(index: pd.DataFrame, split: str) -> pd.DataFrame:
    """A split's slices; a classifier needs both slices with and without a lesion there."""
    part = labelled_split(index, split)
    if part.empty or part["label"].nunique() < 2:
        raise InputError(f"{split} split needs slices with and without lesions (got {len(part)} slices, "
                         f"{int(part['label'].sum()) if len(part) else 0} with a lesion); use more patients")
    return part


def epoch_slices(train: pd.DataFrame, config: DetectionConfig, epoch: int) -> pd.DataFrame:
    """``slices_per_epoch`` training slices, ``positive_fraction`` of them lesion slices, shuffled (seed, epoch)."""
    rng = epoch_rng(config.seed, epoch)
    positives, negatives = train[train["label"] == 1], train[train["label"] == 0]
    n_pos = int(round(config.slices_per_epoch * config.positive_fraction))
    n_neg = config.slices_per_epoch - n_pos
    chosen = pd.concat([positives.iloc[rng.choice(len(positives), n_pos, replace=n_pos > len(positives))],
                        negatives.iloc[rng.choice(len(negatives), n_neg, replace=n_neg > len(negatives))]])
    return chosen.iloc[rng.permutation(len(chosen))].reset_index(drop=True)


def train_detector(slices_root: str | Path, run_dir: str | Path, config: DetectionConfig, architecture: str, *,
                   device: str | None = None, resume: bool = False,
                   progress: Callable[[], None] | None = None) -> DetectorResult:
    """Train ``architecture`` on the training patients' slices; early stopping on validation AUC."""
    from osteomet.evaluation.roc import auc, youden_threshold

    started = time.perf_counter()
    run_dir = Path(run_dir) / architecture
    index = read_index(slices_root)
    check_patient_split(index)
    train, val = _labelled(index, "train"), _labelled(index, "val")
    inputs = square_slices(slices_root, config)
    dev = pick_device(device)
    seed_weights(config.seed)
    model = build_classifier(architecture, config.in_channels, config.width).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    start, stopper, history = start_or_resume(run_dir, model, optimizer, config.patience, resume=resume,
                                              what=f"a {architecture} training run", device=dev)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    for epoch in stopper.epochs(start, config.max_epochs):
        tick = time.perf_counter()
        rows_all = epoch_slices(train, config, epoch)
        flips = epoch_rng(config.seed, epoch, 1).random(len(rows_all)) < config.flip_prob
        augment_rng = epoch_rng(config.seed, epoch, 2)
        model.train()
        losses = []
        for first in range(0, len(rows_all), config.batch_size):
            rows = rows_all.iloc[first:first + config.batch_size]
            x = inputs.batch(rows["patient_id"], rows["slice"])
            flip = flips[first:first + config.batch_size]
            x[flip] = x[flip][..., ::-1]
            y = torch.tensor(rows["label"].to_numpy(), dtype=torch.float32, device=dev)[:, None]
            x_t = torch.from_numpy(np.ascontiguousarray(x)).to(dev)
            if config.augment:
                x_t = random_affine(x_t, augment_rng, degrees=15.0, scale=0.15, shift=0.1)
            losses.append(train_step(model, optimizer, loss_fn, x_t, y))
        probabilities = slice_probabilities(model, inputs, val, config.batch_size, dev)
        val_auc = auc(val["label"].to_numpy(), probabilities)
        if stopper.update(val_auc, epoch):
            threshold = youden_threshold(val["label"].to_numpy(), probabilities)
            save_state({"model": model.state_dict(), "epoch": epoch, "val_auc": val_auc, "threshold": threshold},
                       best_checkpoint(run_dir))
        history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "val_auc": val_auc,
                        "seconds": round(time.perf_counter() - tick, 3)})
        save_last(run_dir, model, optimizer, epoch, stopper, history)
        write_history(run_dir, history)
        if progress:
            progress()
    threshold = _best_threshold(run_dir)
    write_json_atomic(run_dir / "threshold.json", {
        "architecture": architecture, "threshold": threshold, "chosen_on": "validation slices (Youden)",
        "best_epoch": stopper.best_epoch, "val_auc": stopper.best})
    return DetectorResult(run_dir, architecture, stopper.best, stopper.best_epoch, threshold, len(history),
                          stopper.exhausted, pd.DataFrame(history), round(time.perf_counter() - started, 2))


def _best_threshold(run_dir: Path) -> float:
    from osteomet.utils.torch import load_state

    path = best_checkpoint(run_dir)
    return float(load_state(path)["threshold"]) if path.is_file() else math.nan


def untrained_val_auc(slices_root: str | Path, architecture: str, config: DetectionConfig) -> float:
    """Validation AUC of the randomly initialised network (the baseline a trained model must beat)."""
    from osteomet.evaluation.roc import auc

    index = read_index(slices_root)
    val = _labelled(index, "val")
    seed_weights(config.seed)
    model = build_classifier(architecture, config.in_channels, config.width)
    inputs = square_slices(slices_root, config)
    return auc(val["label"].to_numpy(), slice_probabilities(model, inputs, val, config.batch_size, torch.device("cpu")))


def load_detector(run_dir: str | Path, architecture: str, config: DetectionConfig,
                  device: torch.device) -> tuple[torch.nn.Module, float]:
    """Best weights and the validation threshold of a trained architecture."""
    model = build_classifier(architecture, config.in_channels, config.width).to(device)
    state = load_weights(model, best_checkpoint(Path(run_dir) / architecture), device)
    return model.eval(), float(state["threshold"])


def train_detection(manifest, run_dir: str | Path, config: DetectionConfig, *, architectures: list[str] | None = None,
                    cache: str | Path | None = None, device: str | None = None,
                    resume: bool = False) -> list[DetectorResult]:
    """Prepare the run and train every architecture in turn (the programmatic one-call version)."""
    root, config = prepare_slice_run(manifest, run_dir, config, architectures=architectures, cache=cache)
    return [train_detector(root, run_dir, config, a, device=device, resume=resume) for a in config.architectures]
