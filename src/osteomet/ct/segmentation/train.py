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

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from osteomet.ct.segmentation.config import CTSegmentationConfig
from osteomet.ct.segmentation.models import build_segmenter
from osteomet.ct.slices import SliceStore, check_patient_split, read_index
from osteomet.segmentation.model import save_state
from osteomet.segmentation.train import pick_device
from osteomet.utils.files import write_text_atomic


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
    rng = np.random.default_rng([config.seed, epoch])
    positives = train[train["label"] == 1]
    negatives = train[train["label"] == 0]
    n_neg = min(len(negatives), int(round(config.negative_ratio * max(len(positives), 1))))
    chosen = pd.concat([positives, negatives.iloc[rng.choice(len(negatives), n_neg, replace=False)]])
    return chosen.iloc[rng.permutation(len(chosen))].reset_index(drop=True)


def _patients(index: pd.DataFrame, split: str) -> tuple[pd.DataFrame, list[str]]:
    part = index[index["split"] == split]
    unlabelled = part.loc[part["label"].isna(), "patient_id"].unique()
    if len(unlabelled):
        raise ValueError(f"{split} patients without a lesion mask cannot be used for training: {', '.join(unlabelled[:10])}")
    if not (part["label"] == 1).any():
        raise ValueError(f"{split} split has no lesion slice; segmentation needs patients with lesions there")
    return part.astype({"label": int}), list(pd.unique(part["patient_id"]))


def train_segmenter(slices_root: str | Path, run_dir: str | Path, config: CTSegmentationConfig, architecture: str, *,
                    device: str | None = None, progress: Callable[[], None] | None = None) -> SegmenterResult:
    """Train ``architecture`` on training patients' slices; early stopping on validation patients' Dice."""
    from monai.losses import DiceCELoss

    run_dir = Path(run_dir) / architecture
    if (run_dir / "checkpoints" / "best.pt").exists():
        raise FileExistsError(f"{run_dir}: holds a trained {architecture} already; use a new run folder")
    index = read_index(slices_root)
    check_patient_split(index)
    train, _ = _patients(index, "train")
    _, val_ids = _patients(index, "val")
    store = SliceStore(slices_root)
    dev = pick_device(device)
    torch.manual_seed(config.seed)
    model = build_segmenter(architecture, config).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    # batch=True: Dice over the whole batch, so no-lesion slices do not each add a 0/0 term
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)

    history: list[dict] = []
    best_dice, best_epoch, bad_epochs, stopped_early = -math.inf, -1, 0, False
    for epoch in range(config.max_epochs):
        if bad_epochs >= config.patience:
            stopped_early = True
            break
        tick = time.perf_counter()
        rows_all = epoch_slices(train, config, epoch)
        flips = np.random.default_rng([config.seed, epoch, 1]).random(len(rows_all)) < config.flip_prob
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
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x_t), y_t)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
        dice = validation_dice(model, store, val_ids, config.batch_size, dev)
        if dice > best_dice:
            best_dice, best_epoch, bad_epochs = dice, epoch, 0
            save_state({"model": model.state_dict(), "epoch": epoch, "val_dice": dice}, run_dir / "checkpoints" / "best.pt")
        else:
            bad_epochs += 1
        history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "val_dice": dice,
                        "slices": len(rows_all), "seconds": round(time.perf_counter() - tick, 3)})
        save_state({"model": model.state_dict(), "epoch": epoch}, run_dir / "checkpoints" / "last.pt")
        write_text_atomic(run_dir / "history.csv", pd.DataFrame(history).to_csv(index=False))
        if progress:
            progress()
    return SegmenterResult(run_dir, architecture, best_dice, best_epoch, len(history), stopped_early,
                           pd.DataFrame(history))


def untrained_val_dice(slices_root: str | Path, architecture: str, config: CTSegmentationConfig) -> float:
    """Validation Dice of the freshly initialised network (the baseline a trained model must beat)."""
    index = read_index(slices_root)
    _, val_ids = _patients(index, "val")
    torch.manual_seed(config.seed)
    model = build_segmenter(architecture, config)
    return validation_dice(model, SliceStore(slices_root), val_ids, config.batch_size, torch.device("cpu"))


def load_segmenter(run_dir: str | Path, architecture: str, config: CTSegmentationConfig,
                   device: torch.device) -> torch.nn.Module:
    from osteomet.segmentation.model import load_state

    state = load_state(Path(run_dir) / architecture / "checkpoints" / "best.pt", device)
    model = build_segmenter(architecture, config).to(device)
    model.load_state_dict(state["model"])
    return model.eval()


def prepare_segmentation_run(manifest, run_dir: str | Path, config: CTSegmentationConfig, *,
                          architectures: list[str] | None = None, cache: str | Path | None = None,
                          on_patient: Callable[[], None] | None = None) -> tuple[Path, CTSegmentationConfig]:
    """Build the slice dataset (split by patient) and record the run's settings and split; returns (slice root, config)."""
    from osteomet.config import dump_config
    from osteomet.ct.slices import build_slice_dataset

    run_dir = Path(run_dir)
    root = Path(cache) if cache is not None else run_dir / "slices"
    build_slice_dataset(manifest, root, config.slices, progress=on_patient)
    config = config.model_copy(update={"architectures": list(architectures or config.architectures)})
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.yaml", dump_config(config))
    for name in ("patients.csv", "class_balance.csv"):
        if (root / name).is_file():
            write_text_atomic(run_dir / name, (root / name).read_text())
    return root, config


def train_segmentation(manifest, run_dir: str | Path, config: CTSegmentationConfig, *, architectures: list[str] | None = None,
                    cache: str | Path | None = None, device: str | None = None) -> list:
    """Prepare the run and train every architecture in turn (the programmatic one-call version)."""
    root, config = prepare_segmentation_run(manifest, run_dir, config, architectures=architectures, cache=cache)
    return [train_segmenter(root, run_dir, config, a, device=device) for a in config.architectures]
