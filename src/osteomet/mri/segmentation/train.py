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
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from osteomet.config import write_settings
from osteomet.errors import InputError
from osteomet.evaluation.segmentation import overlap
from osteomet.mri.segmentation.config import SegmentationConfig
from osteomet.mri.segmentation.data import PatchDataset, collate_patches, full_volume
from osteomet.mri.segmentation.model import build_unetr
from osteomet.training.loop import EpochResult, Plan, TrainingRun
from osteomet.training.result import TrainingResult
from osteomet.training.seeds import epoch_generator, seed_weights
from osteomet.training.step import train_step
from osteomet.utils.torch import pick_device


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


def train_unetr(preprocessed: str | Path, run_dir: str | Path, config: SegmentationConfig, *, train_ids: list[str],
                val_ids: list[str], resume: bool = False, device: str | None = None,
                on_epoch_end: Callable[[int, dict], None] | None = None,
                progress: Callable[[], None] | None = None) -> TrainingResult:
    """Train on ``train_ids``, stop early on ``val_ids`` Dice; continue a previous run with ``resume``."""
    from monai.losses import DiceCELoss

    started = time.perf_counter()
    root, run_dir = Path(preprocessed), Path(run_dir)
    if not train_ids or not val_ids:
        raise InputError(f"need training and validation patients with masks (got {len(train_ids)} and {len(val_ids)})")
    dev = pick_device(device)
    seed_weights(config.seed)
    model = build_unetr(config).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=config.amp and dev.type == "cuda")
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=config.dice_include_background)
    run = TrainingRun(run_dir, model, optimizer, Plan.of(config, chained_cosine=True), score="val_dice",
                      columns=("epoch", "train_loss", "val_dice", "lr", "seconds"), what="a training run",
                      resume=resume, device=dev, scaler=scaler)
    write_settings(run_dir, config)

    dataset = PatchDataset(root, train_ids, config)

    def epoch(index: int, _validate: bool) -> EpochResult:
        dataset.set_epoch(index)
        loader = torch.utils.data.DataLoader(dataset, batch_size=max(1, config.batch_size // config.samples_per_case),
                                             shuffle=True, generator=epoch_generator(config.seed, index),
                                             collate_fn=collate_patches, num_workers=config.num_workers)
        model.train()
        losses = [train_step(model, optimizer, loss_fn, batch["image"].to(dev), batch["label"].to(dev), scaler=scaler)
                  for batch in loader]
        return EpochResult(float(np.mean(losses)), validation_dice(model, root, val_ids, config, dev))

    def after(index: int, row: dict) -> None:
        if progress:
            progress()
        if on_epoch_end:
            on_epoch_end(index, row)

    run.train(epoch, after)
    return TrainingResult(run_dir, "unetr", "Dice", run.stopper.best, run.stopper.best_epoch, len(run.history),
                          run.stopped_early, pd.DataFrame(run.history), round(time.perf_counter() - started, 2))
