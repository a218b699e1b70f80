"""UNETR training with early stopping on validation Dice, safe checkpoints and exact resume.

Run folder: ``settings.yaml`` (what ran), ``history.csv`` (per epoch: loss, validation Dice,
learning rate, seconds), ``checkpoints/last.pt`` (everything needed to continue, written
atomically after every epoch) and ``checkpoints/best.pt`` (model weights of the best
validation Dice). Both are plain tensors/values, loaded with ``weights_only=True``.

Resume tolerance: on CPU a resumed run reproduces the uninterrupted run's weights and
history exactly (patch sampling and augmentation depend only on seed, epoch and case; the
shuffle generator is re-seeded each epoch); on CUDA, non-deterministic kernels allow
differences of the order of float rounding that can grow over epochs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from osteomet.config import dump_config
from osteomet.errors import InputError, MissingInputError
from osteomet.evaluation.segmentation import overlap
from osteomet.layout import SETTINGS
from osteomet.mri.segmentation.config import SegmentationConfig
from osteomet.mri.segmentation.data import PatchDataset, collate_patches, full_volume
from osteomet.mri.segmentation.model import build_unetr
from osteomet.utils.files import write_text_atomic
from osteomet.utils.torch import (
    EarlyStopping,
    best_checkpoint,
    epoch_generator,
    last_checkpoint,
    load_state,
    pick_device,
    refuse_existing_run,
    save_state,
    seed_weights,
    train_step,
    write_history,
)


@dataclass
class TrainResult:
    run_dir: Path
    best_dice: float
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    history: pd.DataFrame


def sliding_window_probabilities(model: torch.nn.Module, image: torch.Tensor, config: SegmentationConfig,
                                 device: torch.device) -> torch.Tensor:
    """Tumour probability (Z x Y x X) of a whole volume by MONAI's sliding-window inference."""
    from monai.inferers import sliding_window_inference

    x, y, z = config.patch_size
    use_amp = config.amp and device.type == "cuda"
    with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
        logits = sliding_window_inference(image.to(device), roi_size=(z, y, x), sw_batch_size=config.sw_batch_size,
                                          predictor=model, overlap=config.sw_overlap, mode="gaussian")
    return torch.softmax(logits.float(), dim=1)[0, 1].cpu()


def validation_dice(model: torch.nn.Module, root: Path, patient_ids: list[str], config: SegmentationConfig,
                    device: torch.device) -> float:
    model.eval()
    scores = []
    for pid in patient_ids:
        image, mask, _ = full_volume(root, pid)
        prediction = sliding_window_probabilities(model, image, config, device).numpy() >= 0.5
        scores.append(overlap(prediction, mask)["dice"])
    return float(np.mean(scores))


def _scheduler(optimizer: torch.optim.Optimizer, config: SegmentationConfig):
    if config.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(config.max_epochs, 1))
    if config.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=3)
    return None


def train_unetr(preprocessed: str | Path, run_dir: str | Path, config: SegmentationConfig, *, train_ids: list[str],
                val_ids: list[str], resume: bool = False, device: str | None = None,
                on_epoch_end: Callable[[int, dict], None] | None = None,
                progress: Callable[[], None] | None = None) -> TrainResult:
    """Train on ``train_ids``, stop early on ``val_ids`` Dice; continue a previous run with ``resume``."""
    from monai.losses import DiceCELoss

    root, run_dir = Path(preprocessed), Path(run_dir)
    if not train_ids or not val_ids:
        raise InputError(f"need training and validation patients with masks (got {len(train_ids)} and {len(val_ids)})")
    last_path = last_checkpoint(run_dir)
    dev = pick_device(device)
    seed_weights(config.seed)
    model = build_unetr(config).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = _scheduler(optimizer, config)
    use_amp = config.amp and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=config.dice_include_background)

    start_epoch, stopper, history = 0, EarlyStopping(config.patience), []
    if resume:
        if not last_path.exists():
            raise MissingInputError(f"{last_path}: nothing to resume (no checkpoint from an earlier run)")
        state = load_state(last_path, dev)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler"):
            scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch, history = state["epoch"] + 1, list(state["history"])
        stopper = EarlyStopping(config.patience, state["best_dice"], state["best_epoch"], state["bad_epochs"])
    else:
        refuse_existing_run(run_dir, "a training run", "pass --resume to continue it or use a new folder",
                            checkpoint="last.pt")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / SETTINGS, dump_config(config))

    dataset = PatchDataset(root, train_ids, config)
    for epoch in stopper.epochs(start_epoch, config.max_epochs):
        tick = time.perf_counter()
        dataset.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(dataset, batch_size=max(1, config.batch_size // config.samples_per_case),
                                             shuffle=True, generator=epoch_generator(config.seed, epoch),
                                             collate_fn=collate_patches,
                                             num_workers=config.num_workers)
        model.train()
        losses = []
        for batch in loader:
            image, label = batch["image"].to(dev), batch["label"].to(dev)
            losses.append(train_step(model, optimizer, loss_fn, image, label, scaler=scaler))
        dice = validation_dice(model, root, val_ids, config, dev)
        lr = optimizer.param_groups[0]["lr"]
        if scheduler is not None:
            scheduler.step(dice) if config.scheduler == "plateau" else scheduler.step()
        if stopper.update(dice, epoch):
            save_state({"model": model.state_dict(), "epoch": epoch, "val_dice": dice}, best_checkpoint(run_dir))
        row = {"epoch": epoch, "train_loss": float(np.mean(losses)), "val_dice": dice, "lr": lr,
               "seconds": round(time.perf_counter() - tick, 3)}
        history.append(row)
        save_state({
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else {},
            "scaler": scaler.state_dict() if use_amp else {}, "epoch": epoch, "best_dice": stopper.best,
            "best_epoch": stopper.best_epoch, "bad_epochs": stopper.bad_epochs, "history": history,
        }, last_path)
        write_history(run_dir, history)
        if progress:
            progress()
        if on_epoch_end:
            on_epoch_end(epoch, row)
    # stopped early = patience used up, also when that happened on the last allowed epoch
    return TrainResult(run_dir, stopper.best, stopper.best_epoch, len(history), stopper.exhausted, pd.DataFrame(history))
