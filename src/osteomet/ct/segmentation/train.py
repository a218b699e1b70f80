"""Training of one 2D lesion segmenter: Dice + CE on slices, early stopping on validation 3D Dice.

Each epoch draws every lesion slice of the training patients plus ``negative_ratio`` times
as many no-lesion slices (drawn afresh per epoch from seed and epoch), so the network sees
the background it must leave empty without drowning the rare lesion pixels. Validation
predicts every slice of each validation patient, stacks them to a volume on the slice grid
and averages the per-patient Dice (:func:`osteomet.evaluation.segmentation.overlap`).

Run folder per architecture (``RUN/<architecture>/``): ``history.csv``,
``checkpoints/best.pt`` (weights of the best validation Dice; tensors only, loaded with
``weights_only=True``) and ``checkpoints/last.pt``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from osteomet.ct.segmentation.config import CTSegmentationConfig
from osteomet.ct.segmentation.models import build_segmenter
from osteomet.ct.slice_run import labelled_split, prepare_slice_run
from osteomet.ct.slices import SliceStore, check_patient_split, read_index
from osteomet.errors import InputError
from osteomet.utils.torch import (
    EarlyStopping,
    best_checkpoint,
    epoch_rng,
    last_checkpoint,
    load_weights,
    pick_device,
    refuse_existing_run,
    save_state,
    seed_weights,
    train_step,
    write_history,
)


@dataclass
class SegmenterResult:
    run_dir: Path
    architecture: str
    best_dice: float
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    history: pd.DataFrame


def volume_probabilities(model: torch.nn.Module, images: np.ndarray, batch_size: int,
                         device: torch.device) -> np.ndarray:
    """Lesion probability (Z x N x N) of a stack of windowed slices, predicted slice by slice."""
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            x = torch.from_numpy(np.asarray(images[start:start + batch_size], np.float32)[:, None]).to(device)
            out.append(torch.softmax(model(x).float(), dim=1)[:, 1].cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0,) + tuple(images.shape[1:]), np.float32)


def validation_dice(model: torch.nn.Module, store: SliceStore, patient_ids: list[str], batch_size: int,
                    device: torch.device) -> float:
    """Mean per-patient Dice of the stacked prediction on the slice grid."""
    from osteomet.evaluation.segmentation import overlap

    scores = []
    for pid in patient_ids:
        arrays = store.case(pid)[0]
        prediction = volume_probabilities(model, arrays["image"], batch_size, device) >= 0.5
        scores.append(overlap(prediction, np.asarray(arrays["mask"]))["dice"])
    return float(np.mean(scores))


def epoch_slices(train: pd.DataFrame, config: CTSegmentationConfig, epoch: int) -> pd.DataFrame:
    """All lesion slices plus ``negative_ratio`` x as many no-lesion slices, shuffled (seed, epoch)."""
    rng = epoch_rng(config.seed, epoch)
    positives = train[train["label"] == 1]
    negatives = train[train["label"] == 0]
    n_neg = min(len(negatives), int(round(config.negative_ratio * max(len(positives), 1))))
    chosen = pd.concat([positives, negatives.iloc[rng.choice(len(negatives), n_neg, replace=False)]])
    return chosen.iloc[rng.permutation(len(chosen))].reset_index(drop=True)


def _patients(index: pd.DataFrame, split: str) -> tuple[pd.DataFrame, list[str]]:
    """A split's slices and patients; segmentation needs lesion slices there."""
    part = labelled_split(index, split)
    if not (part["label"] == 1).any():
        raise InputError(f"{split} split has no lesion slice; segmentation needs patients with lesions there")
    return part, list(pd.unique(part["patient_id"]))


def train_segmenter(slices_root: str | Path, run_dir: str | Path, config: CTSegmentationConfig, architecture: str, *,
                    device: str | None = None, progress: Callable[[], None] | None = None) -> SegmenterResult:
    """Train ``architecture`` on training patients' slices; early stopping on validation patients' Dice."""
    from monai.losses import DiceCELoss

    run_dir = Path(run_dir) / architecture
    refuse_existing_run(run_dir, f"a trained {architecture}")
    index = read_index(slices_root)
    check_patient_split(index)
    train, _ = _patients(index, "train")
    _, val_ids = _patients(index, "val")
    store = SliceStore(slices_root)
    dev = pick_device(device)
    seed_weights(config.seed)
    model = build_segmenter(architecture, config).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    # batch=True: Dice over the whole batch, so no-lesion slices do not each add a 0/0 term
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)

    history: list[dict] = []
    stopper = EarlyStopping(config.patience)
    for epoch in stopper.epochs(0, config.max_epochs):
        tick = time.perf_counter()
        rows_all = epoch_slices(train, config, epoch)
        flips = epoch_rng(config.seed, epoch, 1).random(len(rows_all)) < config.flip_prob
        model.train()
        losses = []
        for start in range(0, len(rows_all), config.batch_size):
            rows = rows_all.iloc[start:start + config.batch_size]
            x = store.images(rows["patient_id"], rows["slice"])
            y = store.masks(rows["patient_id"], rows["slice"])
            flip = flips[start:start + config.batch_size]
            x[flip], y[flip] = x[flip][..., ::-1], y[flip][..., ::-1]
            x_t = torch.from_numpy(np.ascontiguousarray(x)).to(dev)
            y_t = torch.from_numpy(np.ascontiguousarray(y).astype(np.int64)).to(dev)
            losses.append(train_step(model, optimizer, loss_fn, x_t, y_t))
        dice = validation_dice(model, store, val_ids, config.batch_size, dev)
        if stopper.update(dice, epoch):
            save_state({"model": model.state_dict(), "epoch": epoch, "val_dice": dice}, best_checkpoint(run_dir))
        history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "val_dice": dice,
                        "slices": len(rows_all), "seconds": round(time.perf_counter() - tick, 3)})
        save_state({"model": model.state_dict(), "epoch": epoch}, last_checkpoint(run_dir))
        write_history(run_dir, history)
        if progress:
            progress()
    return SegmenterResult(run_dir, architecture, stopper.best, stopper.best_epoch, len(history),
                           stopper.stopped_early, pd.DataFrame(history))


def untrained_val_dice(slices_root: str | Path, architecture: str, config: CTSegmentationConfig) -> float:
    """Validation Dice of the freshly initialised network (the baseline a trained model must beat)."""
    index = read_index(slices_root)
    _, val_ids = _patients(index, "val")
    seed_weights(config.seed)
    model = build_segmenter(architecture, config)
    return validation_dice(model, SliceStore(slices_root), val_ids, config.batch_size, torch.device("cpu"))


def load_segmenter(run_dir: str | Path, architecture: str, config: CTSegmentationConfig,
                   device: torch.device) -> torch.nn.Module:
    """Best weights of a trained architecture."""
    model = build_segmenter(architecture, config).to(device)
    load_weights(model, best_checkpoint(Path(run_dir) / architecture), device)
    return model.eval()


def train_segmentation(manifest, run_dir: str | Path, config: CTSegmentationConfig, *, architectures: list[str] | None = None,
                    cache: str | Path | None = None, device: str | None = None) -> list:
    """Prepare the run and train every architecture in turn (the programmatic one-call version)."""
    root, config = prepare_slice_run(manifest, run_dir, config, architectures=architectures, cache=cache)
    return [train_segmenter(root, run_dir, config, a, device=device) for a in config.architectures]
