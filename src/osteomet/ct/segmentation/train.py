"""Training of one 2D lesion segmenter on native-resolution patches; early stopping on validation 3D Dice.

Each epoch draws ``patches_per_epoch`` patches from the training patients' bone crops
(:class:`osteomet.ct.segmentation.patches.PatchSampler`: lesion-centred with probability
``lesion_fraction``, random in bone or anywhere in the crop otherwise; adjacent slices as
channels), optimised with Dice + cross-entropy. Validation predicts every slice of each
validation patient exactly as inference does (sliding windows of the patch size over the whole
bone crop, probability kept within ``bone_only_mm`` of bone), stacks them to a volume and
averages the per-patient Dice (:func:`osteomet.evaluation.segmentation.overlap`).

Run folder per architecture (``RUN/<architecture>/``): ``history.csv``,
``checkpoints/best.pt`` (the weights inference uses: of the best validation Dice, or of the
final epoch with ``weights: final``; tensors only, loaded with ``weights_only=True``),
``checkpoints/last.pt`` (everything ``--resume`` needs) and ``postprocessing.json`` (threshold,
component confidence and smallest lesion volume, chosen on the validation patients with the
kept weights: :mod:`osteomet.ct.segmentation.postprocess`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from osteomet.ct.segmentation.config import CTSegmentationConfig
from osteomet.ct.segmentation.models import build_segmenter
from osteomet.ct.segmentation.patches import PatchSampler
from osteomet.ct.slices.cache import SliceStore
from osteomet.ct.slices.dataset import read_index
from osteomet.ct.slices.inputs import bone_neighbourhood, random_affine_pair, random_intensity, with_context
from osteomet.ct.slices.run import labelled_split, prepare_slice_run
from osteomet.errors import InputError
from osteomet.training.checkpoint import best_checkpoint, load_weights, run_started
from osteomet.training.loop import EpochResult, Plan, TrainingRun
from osteomet.training.result import TrainingResult
from osteomet.training.sampling import sampled_epoch
from osteomet.training.seeds import seed_weights
from osteomet.training.step import train_step
from osteomet.utils.torch import pick_device


def lesion_region(bone: np.ndarray, spacing: tuple[float, float], config: CTSegmentationConfig) -> np.ndarray | None:
    """Where a lesion may be predicted: the cached bone region grown by ``bone_only_mm`` (None: everywhere)."""
    if config.bone_only_mm is None:
        return None
    return bone_neighbourhood(bone, spacing, config.bone_only_mm)


def volume_probabilities(model: torch.nn.Module, image: np.ndarray, config: CTSegmentationConfig,
                         device: torch.device, *, region: np.ndarray | None = None,
                         slices_per_batch: int = 16) -> np.ndarray:
    """Lesion probability (Z x H x W) of a cropped, windowed volume: sliding windows of the patch size per slice.

    ``region`` (Z x H x W, from :func:`lesion_region`) zeroes the probability outside it.
    """
    from monai.inferers import sliding_window_inference

    model.eval()
    out = []
    roi = (config.patch_size, config.patch_size)
    with torch.no_grad():
        for start in range(0, image.shape[0], slices_per_batch):
            ks = np.arange(start, min(start + slices_per_batch, image.shape[0]))
            x = torch.from_numpy(with_context(image, ks, config.context_slices)).to(device)
            logits = sliding_window_inference(x, roi, config.batch_size, model, overlap=config.window_overlap,
                                              mode="gaussian")
            probability = torch.softmax(logits.float(), dim=1)[:, 1].cpu().numpy()
            out.append(probability * region[ks] if region is not None else probability)
    return np.concatenate(out) if out else np.zeros((0,) + tuple(image.shape[1:]), np.float32)


def patch_probabilities(model: torch.nn.Module, x: np.ndarray, batch_size: int, device: torch.device) -> np.ndarray:
    """Lesion probability (n, size, size) of patches (n, channels, size, size)."""
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            logits = model(torch.from_numpy(np.ascontiguousarray(x[start:start + batch_size])).to(device))
            out.append(torch.softmax(logits.float(), dim=1)[:, 1].cpu().numpy())
    return np.concatenate(out)


def validation_probabilities(model: torch.nn.Module, store: SliceStore, patient_ids: list[str],
                             config: CTSegmentationConfig, device: torch.device) -> list[np.ndarray]:
    """The lesion probabilities of the validation patients on the cropped slice grid, as inference computes them."""
    out = []
    for pid in patient_ids:
        region = lesion_region(store.array(pid, "bone"), store.spacing(pid), config)
        out.append(volume_probabilities(model, store.array(pid, "image"), config, device, region=region))
    return out


def validation_dice(model: torch.nn.Module, store: SliceStore, patient_ids: list[str], config: CTSegmentationConfig,
                    device: torch.device) -> float:
    """Mean per-patient Dice of the stacked prediction on the cropped slice grid."""
    from osteomet.evaluation.segmentation import overlap

    probabilities = validation_probabilities(model, store, patient_ids, config, device)
    scores = [overlap(p >= 0.5, np.asarray(store.array(pid, "mask")))["dice"] for p, pid in zip(probabilities, patient_ids)]
    return float(np.nanmean(scores))


def choose_postprocessing(run_dir: Path, model: torch.nn.Module, store: SliceStore, val_ids: list[str],
                          config: CTSegmentationConfig, device: torch.device) -> dict:
    """With the kept weights, the threshold, component confidence and volume that maximise validation Dice (recorded)."""
    from osteomet.ct.segmentation import postprocess

    load_weights(model, best_checkpoint(run_dir), device)
    probabilities = validation_probabilities(model, store, val_ids, config, device)
    choice = postprocess.choose_postprocessing(probabilities, [np.asarray(store.array(p, "mask")) for p in val_ids],
                                               [store.voxel_ml(p) for p in val_ids])
    postprocess.write_postprocessing(run_dir, choice)
    return choice


def _patients(index: pd.DataFrame, split: str) -> list[str]:
    """A split's patients; segmentation needs lesion slices there."""
    part = labelled_split(index, split)
    if not (part["label"] == 1).any():
        raise InputError(f"{split} split has no lesion slice; segmentation needs patients with lesions there")
    return list(pd.unique(part["patient_id"]))


def train_segmenter(slices_root: str | Path, run_dir: str | Path, config: CTSegmentationConfig, architecture: str, *,
                    device: str | None = None, resume: bool = False,
                    progress: Callable[[], None] | None = None) -> TrainingResult:
    """Train ``architecture`` on training patients' patches; early stopping on validation patients' Dice.

    With ``resume`` an architecture the run had started continues from its ``last.pt``; one it had not
    reached starts afresh.
    """
    from monai.losses import DiceCELoss

    started = time.perf_counter()
    config = config.for_architecture(architecture)
    run_dir = Path(run_dir) / architecture
    index = read_index(slices_root)
    train_ids, val_ids = _patients(index, "train"), _patients(index, "val")
    store = SliceStore(slices_root)
    sampler = PatchSampler(store, train_ids, size=config.patch_size, context=config.context_slices,
                           lesion_fraction=config.lesion_fraction, anywhere_fraction=config.anywhere_fraction)
    dev = pick_device(device)
    seed_weights(config.seed)
    model = build_segmenter(architecture, config).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    run = TrainingRun(run_dir, model, optimizer, Plan.of(config), score="val_dice",
                      columns=("epoch", "lr", "train_loss", "val_dice", "patches", "seconds"),
                      what=f"a {architecture} training run", resume=resume and run_started(run_dir), device=dev)
    # batch=True: Dice over the whole batch, so lesion-free patches do not each add a 0/0 term
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)

    def epoch(index: int, validate: bool) -> EpochResult:
        losses = []
        for x, y, rng in sampled_epoch(sampler, model, lambda x: patch_probabilities(model, x, config.batch_size, dev),
                                       seed=config.seed, epoch=index, samples=config.patches_per_epoch,
                                       batch_size=config.batch_size, flip_prob=config.flip_prob,
                                       hard_negatives=config.hard_negatives):
            x_t, y_t = torch.from_numpy(x).to(dev), torch.from_numpy(y).to(dev)
            if config.augment:
                x_t, y_t = random_affine_pair(x_t, y_t, rng, degrees=15.0, scale=0.15, shift=0.1)
                x_t = random_intensity(x_t, rng, contrast=0.1, brightness=0.03)
            losses.append(train_step(model, optimizer, loss_fn, x_t, y_t))
        dice = validation_dice(model, store, val_ids, config, dev) if validate else float("nan")
        return EpochResult(float(np.mean(losses)), dice, {"patches": config.patches_per_epoch})

    run.train(epoch, (lambda _index, _row: progress()) if progress else None)
    choose_postprocessing(run_dir, model, store, val_ids, config, dev)
    kept_dice, kept_epoch = run.kept_score()
    return TrainingResult(run_dir, architecture, "Dice", kept_dice, kept_epoch, len(run.history), run.stopped_early,
                          pd.DataFrame(run.history), round(time.perf_counter() - started, 2))


def untrained_val_dice(slices_root: str | Path, architecture: str, config: CTSegmentationConfig) -> float:
    """Validation Dice of the freshly initialised network (the baseline a trained model must beat)."""
    index = read_index(slices_root)
    seed_weights(config.seed)
    model = build_segmenter(architecture, config)
    return validation_dice(model, SliceStore(slices_root), _patients(index, "val"), config, torch.device("cpu"))


def load_segmenter(run_dir: str | Path, architecture: str, config: CTSegmentationConfig,
                   device: torch.device) -> torch.nn.Module:
    """Best weights of a trained architecture."""
    model = build_segmenter(architecture, config).to(device)
    load_weights(model, best_checkpoint(Path(run_dir) / architecture), device)
    return model.eval()


def train_segmentation(manifest, run_dir: str | Path, config: CTSegmentationConfig, *,
                       architectures: list[str] | None = None, cache: str | Path | None = None,
                       device: str | None = None, resume: bool = False) -> list[TrainingResult]:
    """Prepare the run and train every architecture in turn (the programmatic one-call version)."""
    root, config = prepare_slice_run(manifest, run_dir, config, architectures=architectures, cache=cache)
    return [train_segmenter(root, run_dir, config, a, device=device, resume=resume) for a in config.architectures]
