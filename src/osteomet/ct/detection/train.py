"""Training of one slice classifier on bone tiles; the best or the final epoch's weights (``weights``).

Inputs (:mod:`osteomet.ct.detection.tiles`): square tiles of bone at a fixed physical size,
``context_slices`` neighbours as extra channels. Each epoch draws ``tiles_per_epoch``
training tiles, ``positive_fraction`` of them centred (with jitter) on a lesion voxel and the
rest on random bone: lesion slices are about 4% of a whole-body scan, and a classifier fed them
in that proportion learns "no lesion". Validation scores every validation slice as inference
does: the highest probability of the tiles covering its bone, averaged with its neighbouring
slices' when ``slice_smoothing`` is set (:func:`smooth_over_slices`).

Run folder per architecture (``RUN/<architecture>/``): ``history.csv`` (per epoch: loss,
validation AUC, seconds), ``checkpoints/best.pt`` (the weights inference uses: of the best
validation AUC, or of the final epoch with ``weights: final``; tensors only, loaded with
``weights_only=True``), ``checkpoints/last.pt`` (everything ``--resume`` needs) and
``threshold.json``: the Youden threshold of the kept epoch's validation slice probabilities.
It is chosen on validation patients only and applied unchanged to the test patients, at slice
level and at patient level (patient score = max over its slices, so a patient is positive
exactly when one of its slices is).

Determinism: the slices drawn and the flips depend only on seed and epoch, so a CPU rerun
(or a resumed run) gives the same weights; only a resumed EfficientNet-B0 differs, as its
dropout draws from torch's global generator, which this trainer does not re-seed per epoch.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from osteomet.ct.detection.config import DetectionConfig
from osteomet.ct.detection.models import build_classifier
from osteomet.ct.detection.tiles import BoneTiles, TileSampler
from osteomet.ct.slices.cache import SliceStore
from osteomet.ct.slices.dataset import read_index
from osteomet.ct.slices.inputs import random_affine
from osteomet.ct.slices.run import labelled_split, prepare_slice_run
from osteomet.errors import InputError
from osteomet.layout import THRESHOLD
from osteomet.training.checkpoint import best_checkpoint, load_state, load_weights, run_started
from osteomet.training.loop import EpochResult, Plan, TrainingRun
from osteomet.training.result import TrainingResult
from osteomet.training.sampling import sampled_epoch
from osteomet.training.seeds import seed_weights
from osteomet.training.step import train_step
from osteomet.utils.files import write_json_atomic
from osteomet.utils.torch import pick_device


def bone_tiles(slices_root: str | Path, config: DetectionConfig) -> BoneTiles:
    """The classifier inputs of a slice cache, as this config cuts them."""
    return BoneTiles(SliceStore(slices_root), config.tiles())


def tile_probabilities(model: torch.nn.Module, x: np.ndarray, batch_size: int, device: torch.device) -> np.ndarray:
    """Lesion probability of each tile of (T, channels, size, size)."""
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(x[start:start + batch_size])).to(device)
            out.append(torch.sigmoid(model(batch).float()).reshape(-1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def smooth_over_slices(table: pd.DataFrame, probabilities: np.ndarray, neighbours: int) -> np.ndarray:
    """Each row's probability averaged with those of its patient's slices up to ``neighbours`` away (the ones in
    ``table``; fewer at the ends of a scan).

    Why: a lesion spans several 5 mm slices (16-31 mm nodules on the demo grid), while a false-positive tile
    is mostly a slice on its own, as a 2D segmenter's false blobs are (``min_slices`` in segmentation).
    """
    probabilities = np.asarray(probabilities, float)
    if neighbours <= 0 or not len(probabilities):
        return probabilities
    out = np.empty_like(probabilities)
    slices = table["slice"].to_numpy().astype(int)
    for rows in table.reset_index(drop=True).groupby("patient_id", sort=False).indices.values():
        ks = slices[rows]
        by_slice = dict(zip(ks, probabilities[rows]))
        for row, k in zip(rows, ks):
            near = [by_slice[j] for j in range(k - neighbours, k + neighbours + 1) if j in by_slice]
            out[row] = float(np.mean(near))
    return out


def slice_probabilities(model: torch.nn.Module, tiles: BoneTiles, table: pd.DataFrame, batch_size: int,
                        device: torch.device, neighbours: int = 0) -> np.ndarray:
    """Lesion probability of every (patient_id, slice) row of ``table``, in its order: the highest of its tiles,
    averaged with the neighbouring slices' (:func:`smooth_over_slices`, ``slice_smoothing`` in the config)."""
    model.eval()
    stacks, owners = [], []
    for i, (pid, k) in enumerate(zip(table["patient_id"], table["slice"])):
        x, _ = tiles.slice_tiles(pid, int(k))
        stacks.append(x)
        owners.append(np.full(len(x), i))
    if not stacks:
        return np.zeros(0)
    probabilities = tile_probabilities(model, np.concatenate(stacks), batch_size, device)
    out = np.zeros(len(table))
    np.maximum.at(out, np.concatenate(owners), probabilities)
    return smooth_over_slices(table, out, neighbours)


def _labelled(index: pd.DataFrame, split: str) -> pd.DataFrame:
    """A split's slices; a classifier needs both slices with and without a lesion there."""
    part = labelled_split(index, split)
    if part.empty or part["label"].nunique() < 2:
        raise InputError(f"{split} split needs slices with and without lesions (got {len(part)} slices, "
                         f"{int(part['label'].sum()) if len(part) else 0} with a lesion); use more patients")
    return part


def train_detector(slices_root: str | Path, run_dir: str | Path, config: DetectionConfig, architecture: str, *,
                   device: str | None = None, resume: bool = False,
                   progress: Callable[[], None] | None = None) -> TrainingResult:
    """Train ``architecture`` on the training patients' slices; early stopping on validation AUC.

    With ``resume`` an architecture the run had started continues from its ``last.pt``; one it had not
    reached starts afresh.
    """
    from osteomet.evaluation.roc import auc, youden_threshold

    started = time.perf_counter()
    config = config.for_architecture(architecture)
    run_dir = Path(run_dir) / architecture
    index = read_index(slices_root)
    train, val = _labelled(index, "train"), _labelled(index, "val")
    labels = val["label"].to_numpy()
    tiles = bone_tiles(slices_root, config)
    sampler = TileSampler(tiles, list(pd.unique(train["patient_id"])), config.positive_fraction,
                          config.bone_centred_fraction)
    dev = pick_device(device)
    seed_weights(config.seed)
    model = build_classifier(architecture, config.in_channels, config.width).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    # not re-seeded per epoch: EfficientNet-B0's dropout has always drawn from the generator as seeded for its
    # weights, and re-seeding would change every trained detector (a resumed EfficientNet-B0 run draws other dropout)
    run = TrainingRun(run_dir, model, optimizer, Plan.of(config, reseed_epochs=False), score="val_auc",
                      columns=("epoch", "lr", "train_loss", "val_auc", "tiles", "seconds"),
                      what=f"a {architecture} training run", resume=resume and run_started(run_dir), device=dev)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def epoch(index: int, validate: bool) -> EpochResult:
        losses = []
        for x, y, rng in sampled_epoch(sampler, model, lambda x: tile_probabilities(model, x, config.batch_size, dev),
                                       seed=config.seed, epoch=index, samples=config.tiles_per_epoch,
                                       batch_size=config.batch_size, flip_prob=config.flip_prob,
                                       hard_negatives=config.hard_negatives):
            x_t = torch.from_numpy(x).to(dev)
            if config.augment:
                x_t = random_affine(x_t, rng, degrees=15.0, scale=0.15, shift=0.1)
            losses.append(train_step(model, optimizer, loss_fn, x_t, torch.from_numpy(y)[:, None].to(dev)))
        columns = {"tiles": config.tiles_per_epoch}
        if not validate:
            return EpochResult(float(np.mean(losses)), columns=columns)
        probabilities = slice_probabilities(model, tiles, val, config.batch_size, dev, config.slice_smoothing)
        return EpochResult(float(np.mean(losses)), auc(labels, probabilities), columns,
                           kept=lambda: {"threshold": youden_threshold(labels, probabilities)})

    run.train(epoch, (lambda _index, _row: progress()) if progress else None)
    threshold = _best_threshold(run_dir)
    kept_auc, kept_epoch = run.kept_score()
    write_json_atomic(run_dir / THRESHOLD, {
        "architecture": architecture, "threshold": threshold, "chosen_on": "validation slices (Youden)",
        "weights": config.weights, "best_epoch": kept_epoch, "val_auc": kept_auc})
    return TrainingResult(run_dir, architecture, "AUC", kept_auc, kept_epoch, len(run.history), run.stopped_early,
                          pd.DataFrame(run.history), round(time.perf_counter() - started, 2), threshold)


def _best_threshold(run_dir: Path) -> float:
    path = best_checkpoint(run_dir)
    return float(load_state(path)["threshold"]) if path.is_file() else math.nan


def untrained_val_auc(slices_root: str | Path, architecture: str, config: DetectionConfig) -> float:
    """Validation AUC of the randomly initialised network (the baseline a trained model must beat)."""
    from osteomet.evaluation.roc import auc

    index = read_index(slices_root)
    val = _labelled(index, "val")
    seed_weights(config.seed)
    config = config.for_architecture(architecture)
    model = build_classifier(architecture, config.in_channels, config.width)
    return auc(val["label"].to_numpy(), slice_probabilities(model, bone_tiles(slices_root, config), val,
                                                            config.batch_size, torch.device("cpu"),
                                                            config.slice_smoothing))


def load_detector(run_dir: str | Path, architecture: str, config: DetectionConfig,
                  device: torch.device) -> tuple[torch.nn.Module, float]:
    """Best weights and the validation threshold of a trained architecture."""
    config = config.for_architecture(architecture)
    model = build_classifier(architecture, config.in_channels, config.width).to(device)
    state = load_weights(model, best_checkpoint(Path(run_dir) / architecture), device)
    return model.eval(), float(state["threshold"])


def train_detection(manifest, run_dir: str | Path, config: DetectionConfig, *, architectures: list[str] | None = None,
                    cache: str | Path | None = None, device: str | None = None,
                    resume: bool = False) -> list[TrainingResult]:
    """Prepare the run and train every architecture in turn (the programmatic one-call version)."""
    root, config = prepare_slice_run(manifest, run_dir, config, architectures=architectures, cache=cache)
    return [train_detector(root, run_dir, config, a, device=device, resume=resume) for a in config.architectures]
