"""Training of one slice classifier: BCE, early stopping on validation AUC, best checkpoint, Youden threshold.

Run folder per architecture (``RUN/<architecture>/``): ``history.csv`` (per epoch: loss,
validation AUC, seconds), ``checkpoints/best.pt`` (weights at the best validation AUC;
tensors only, loaded with ``weights_only=True``), ``checkpoints/last.pt`` and
``threshold.json``: the Youden threshold of the best epoch's validation slice
probabilities. It is chosen on validation patients only and applied unchanged to the test
patients, at slice level and at patient level (patient score = max over its slices, so a
patient is positive exactly when one of its slices is).

Determinism: the slice order and the flips depend only on seed and epoch, so a CPU rerun
gives the same weights.
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
from osteomet.ct.slice_run import labelled_split, prepare_slice_run
from osteomet.ct.slices import SliceStore, check_patient_split, read_index
from osteomet.errors import InputError
from osteomet.utils.files import write_json_atomic
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
class DetectorResult:
    run_dir: Path
    architecture: str
    best_auc: float
    best_epoch: int
    threshold: float
    epochs_run: int
    stopped_early: bool
    history: pd.DataFrame


def slice_probabilities(model: torch.nn.Module, store: SliceStore, table: pd.DataFrame, batch_size: int,
                        device: torch.device) -> np.ndarray:
    """Lesion probability of every (patient_id, slice) row of ``table``, in its order."""
    model.eval()
    out = []
    pids, ks = table["patient_id"].to_numpy(), table["slice"].to_numpy()
    with torch.no_grad():
        for start in range(0, len(table), batch_size):
            x = torch.from_numpy(store.images(pids[start:start + batch_size], ks[start:start + batch_size]))
            out.append(torch.sigmoid(model(x.to(device)).float()).reshape(-1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def _labelled(index: pd.DataFrame, split: str) -> pd.DataFrame:
    """A split's slices; a classifier needs both slices with and without a lesion there."""
    part = labelled_split(index, split)
    if part.empty or part["label"].nunique() < 2:
        raise InputError(f"{split} split needs slices with and without lesions (got {len(part)} slices, "
                         f"{int(part['label'].sum()) if len(part) else 0} with a lesion); use more patients")
    return part


def _pos_weight(config: DetectionConfig, labels: np.ndarray) -> float | None:
    if config.pos_weight == "auto":
        return float((labels == 0).sum() / max((labels == 1).sum(), 1))
    return config.pos_weight


def train_detector(slices_root: str | Path, run_dir: str | Path, config: DetectionConfig, architecture: str, *,
                   device: str | None = None, progress: Callable[[], None] | None = None) -> DetectorResult:
    """Train ``architecture`` on the training patients' slices; early stopping on validation AUC."""
    from osteomet.evaluation.roc import auc, youden_threshold

    run_dir = Path(run_dir) / architecture
    refuse_existing_run(run_dir, f"a trained {architecture}")
    index = read_index(slices_root)
    check_patient_split(index)
    train, val = _labelled(index, "train"), _labelled(index, "val")
    store = SliceStore(slices_root)
    dev = pick_device(device)
    seed_weights(config.seed)
    model = build_classifier(architecture).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    weight = _pos_weight(config, train["label"].to_numpy())
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor([weight], device=dev) if weight else None)

    history: list[dict] = []
    stopper, threshold = EarlyStopping(config.patience), math.nan
    for epoch in stopper.epochs(0, config.max_epochs):
        tick = time.perf_counter()
        rng = epoch_rng(config.seed, epoch)
        order = rng.permutation(len(train))
        flips = rng.random(len(train)) < config.flip_prob
        model.train()
        losses = []
        for start in range(0, len(order), config.batch_size):
            rows = train.iloc[order[start:start + config.batch_size]]
            x = store.images(rows["patient_id"], rows["slice"])
            flip = flips[order[start:start + config.batch_size]]
            x[flip] = x[flip][..., ::-1]
            y = torch.tensor(rows["label"].to_numpy(), dtype=torch.float32, device=dev)[:, None]
            losses.append(train_step(model, optimizer, loss_fn, torch.from_numpy(np.ascontiguousarray(x)).to(dev), y))
        probabilities = slice_probabilities(model, store, val, config.batch_size, dev)
        val_auc = auc(val["label"].to_numpy(), probabilities)
        if stopper.update(val_auc, epoch):
            threshold = youden_threshold(val["label"].to_numpy(), probabilities)
            save_state({"model": model.state_dict(), "epoch": epoch, "val_auc": val_auc, "threshold": threshold},
                       best_checkpoint(run_dir))
        history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "val_auc": val_auc,
                        "seconds": round(time.perf_counter() - tick, 3)})
        save_state({"model": model.state_dict(), "epoch": epoch}, last_checkpoint(run_dir))
        write_history(run_dir, history)
        if progress:
            progress()
    write_json_atomic(run_dir / "threshold.json", {
        "architecture": architecture, "threshold": threshold, "chosen_on": "validation slices (Youden)",
        "best_epoch": stopper.best_epoch, "val_auc": stopper.best, "pos_weight": weight})
    return DetectorResult(run_dir, architecture, stopper.best, stopper.best_epoch, threshold, len(history),
                          stopper.stopped_early, pd.DataFrame(history))


def untrained_val_auc(slices_root: str | Path, architecture: str, *, seed: int = 0, batch_size: int = 32) -> float:
    """Validation AUC of the randomly initialised network (the baseline a trained model must beat)."""
    from osteomet.evaluation.roc import auc

    index = read_index(slices_root)
    val = _labelled(index, "val")
    seed_weights(seed)
    model = build_classifier(architecture)
    return auc(val["label"].to_numpy(), slice_probabilities(model, SliceStore(slices_root), val, batch_size,
                                                            torch.device("cpu")))


def load_detector(run_dir: str | Path, architecture: str, device: torch.device) -> tuple[torch.nn.Module, float]:
    """Best weights and the validation threshold of a trained architecture."""
    model = build_classifier(architecture).to(device)
    state = load_weights(model, best_checkpoint(Path(run_dir) / architecture), device)
    return model.eval(), float(state["threshold"])


def train_detection(manifest, run_dir: str | Path, config: DetectionConfig, *, architectures: list[str] | None = None,
                    cache: str | Path | None = None, device: str | None = None) -> list:
    """Prepare the run and train every architecture in turn (the programmatic one-call version)."""
    root, config = prepare_slice_run(manifest, run_dir, config, architectures=architectures, cache=cache)
    return [train_detector(root, run_dir, config, a, device=device) for a in config.architectures]
