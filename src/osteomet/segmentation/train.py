"""UNETR training with early stopping on validation Dice, safe checkpoints and exact resume.

Run folder: ``config.yaml`` (what ran), ``history.csv`` (per epoch: loss, validation Dice,
learning rate, seconds), ``checkpoints/last.pt`` (everything needed to continue, written
atomically after every epoch) and ``checkpoints/best.pt`` (model weights of the best
validation Dice). Both are plain tensors/values, loaded with ``weights_only=True``.

Resume tolerance: on CPU a resumed run reproduces the uninterrupted run's weights and
history exactly (patch sampling and augmentation depend only on seed, epoch and case; the
shuffle generator is re-seeded each epoch); on CUDA, non-deterministic kernels allow
differences of the order of float rounding that can grow over epochs.
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

from osteomet.config import dump_config
from osteomet.segmentation.config import SegmentationConfig
from osteomet.segmentation.data import PatchDataset, collate_patches, full_volume
from osteomet.segmentation.metrics import overlap
from osteomet.segmentation.model import build_unetr, load_state, save_state
from osteomet.utils.files import write_text_atomic


@dataclass
class TrainResult:
    run_dir: Path
    best_dice: float
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    history: pd.DataFrame


def pick_device(device: str | None = None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


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
        raise ValueError(f"need training and validation patients with masks (got {len(train_ids)} and {len(val_ids)})")
    checkpoints = run_dir / "checkpoints"
    last_path = checkpoints / "last.pt"
    dev = pick_device(device)
    torch.manual_seed(config.seed)
    model = build_unetr(config).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = _scheduler(optimizer, config)
    use_amp = config.amp and dev.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=config.dice_include_background)

    start_epoch, best_dice, best_epoch, bad_epochs, history = 0, -math.inf, -1, 0, []
    if resume:
        if not last_path.exists():
            raise FileNotFoundError(f"{last_path}: nothing to resume (no checkpoint from an earlier run)")
        state = load_state(last_path, dev)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state.get("scheduler"):
            scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch, best_dice, best_epoch = state["epoch"] + 1, state["best_dice"], state["best_epoch"]
        bad_epochs, history = state["bad_epochs"], list(state["history"])
    elif last_path.exists():
        raise FileExistsError(f"{run_dir}: holds a training run already; pass --resume to continue it or use a new folder")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.yaml", dump_config(config))

    dataset = PatchDataset(root, train_ids, config)
    stopped_early = False
    epoch = start_epoch - 1
    for epoch in range(start_epoch, config.max_epochs):
        if bad_epochs >= config.patience:
            stopped_early = True
            break
        tick = time.perf_counter()
        dataset.set_epoch(epoch)
        generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        loader = torch.utils.data.DataLoader(dataset, batch_size=max(1, config.batch_size // config.samples_per_case),
                                             shuffle=True, generator=generator, collate_fn=collate_patches,
                                             num_workers=config.num_workers)
        model.train()
        losses = []
        for batch in loader:
            image, label = batch["image"].to(dev), batch["label"].to(dev)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=use_amp):
                loss = loss_fn(model(image), label)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            losses.append(float(loss.detach()))
        dice = validation_dice(model, root, val_ids, config, dev)
        lr = optimizer.param_groups[0]["lr"]
        if scheduler is not None:
            scheduler.step(dice) if config.scheduler == "plateau" else scheduler.step()
        if dice > best_dice:
            best_dice, best_epoch, bad_epochs = dice, epoch, 0
            save_state({"model": model.state_dict(), "epoch": epoch, "val_dice": dice}, checkpoints / "best.pt")
        else:
            bad_epochs += 1
        row = {"epoch": epoch, "train_loss": float(np.mean(losses)), "val_dice": dice, "lr": lr,
               "seconds": round(time.perf_counter() - tick, 3)}
        history.append(row)
        save_state({
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else {},
            "scaler": scaler.state_dict() if use_amp else {}, "epoch": epoch, "best_dice": best_dice,
            "best_epoch": best_epoch, "bad_epochs": bad_epochs, "history": history,
        }, last_path)
        write_text_atomic(run_dir / "history.csv", pd.DataFrame(history).to_csv(index=False))
        if progress:
            progress()
        if on_epoch_end:
            on_epoch_end(epoch, row)
    else:
        stopped_early = bad_epochs >= config.patience
    return TrainResult(run_dir, best_dice, best_epoch, len(history), stopped_early, pd.DataFrame(history))
