"""Training of one classifier configuration (depth, optimiser, learning rate), resumable.

Run folder: ``run.json`` (the configuration and the settings), ``history.csv`` (per epoch:
training loss, validation AUC, learning rate, seconds), ``checkpoints/last.pt`` (all that is
needed to continue, written atomically after every epoch), ``checkpoints/best.pt`` (weights
of the best validation AUC) and, once finished, ``result.json`` (the best epoch's validation
AUC with its DeLong CI and accuracy). Checkpoints hold tensors and plain values only and are
read with ``weights_only=True``.

Labels come in as plain mappings that the caller took from a
:class:`~osteomet.mri.classifier.labels.LabelGuard` (training labels to fit, validation
labels to stop early), so this module never sees test or external labels.

Selection: early stopping and the best checkpoint follow the validation AUC, optionally
smoothed by an exponential moving average (``selection_smoothing``) and ignored for the first
``min_epochs`` epochs. With ten validation patients one epoch's AUC moves by 0.1 between
neighbouring epochs, and an unsmoothed rule keeps whichever early epoch happened to spike.

Reproducibility: on CPU with the same thread count a rerun, and a run resumed from
``last.pt``, give the same weights and history (weights seeded before the network is built,
shuffling and augmentation re-seeded per epoch).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from osteomet.errors import InputError, MissingInputError
from osteomet.layout import RESULT, RUN_RECORD
from osteomet.mri.classifier.config import ClassifierConfig
from osteomet.mri.classifier.data import RoiDataset
from osteomet.mri.classifier.model import build_resnet
from osteomet.training.checkpoint import best_checkpoint, load_state, run_started
from osteomet.training.loop import EpochResult, Plan, TrainingRun
from osteomet.training.seeds import epoch_generator, seed_weights
from osteomet.training.step import train_step
from osteomet.utils.files import read_json, write_json_atomic
from osteomet.utils.precision import resolve_precision
from osteomet.utils.torch import pick_device


@dataclass(frozen=True)
class RunSpec:
    """One cell of the grid."""

    depth: int
    optimizer: str
    learning_rate: float

    @property
    def name(self) -> str:
        return f"resnet{self.depth}_{self.optimizer}_lr{self.learning_rate:g}"


def make_optimizer(model: torch.nn.Module, spec: RunSpec, config: ClassifierConfig) -> torch.optim.Optimizer:
    params, lr, wd = model.parameters(), spec.learning_rate, config.weight_decay
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=config.momentum, weight_decay=wd)
    if spec.optimizer == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=wd)
    if spec.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if spec.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=wd)
    raise InputError(f"unknown optimiser {spec.optimizer!r}; choose sgd, adam, adamw or rmsprop")


def predict_probabilities(model: torch.nn.Module, dataset: RoiDataset, device: torch.device,
                          batch_size: int) -> np.ndarray:
    """Bone-metastasis probability of every patient of an (unaugmented) dataset, in its order."""
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(dataset), batch_size):
            x = torch.stack([dataset[i][0] for i in range(start, min(start + batch_size, len(dataset)))])
            out.append(torch.sigmoid(model(x.to(device)).reshape(-1).float()).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0)


def validation_summary(labels: np.ndarray, probs: np.ndarray, threshold: float) -> dict[str, float]:
    """Validation AUC with its DeLong 95% CI (NaN bounds when a class has < 2 patients) and accuracy."""
    from osteomet.evaluation import auc, delong_ci
    from osteomet.evaluation.errors import EvaluationInputError

    value = auc(labels, probs)
    try:
        ci = delong_ci(labels, probs)
        low, high = ci.low, ci.high
    except EvaluationInputError:
        low = high = math.nan
    acc = float(np.mean((probs >= threshold) == (labels == 1)))
    return {"val_auc": float(value), "val_auc_low": float(low), "val_auc_high": float(high), "val_acc": acc,
            "n_val": int(labels.size), "n_val_positive": int(labels.sum())}


@dataclass
class RunResult:
    name: str
    depth: int
    optimizer: str
    learning_rate: float
    val_auc: float
    val_auc_low: float
    val_auc_high: float
    val_acc: float
    n_val: int
    n_val_positive: int
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    seconds: float
    val_score: float = math.nan  # the (smoothed) validation AUC the best epoch was chosen by; the grid ranks by it


def read_result(run_dir: str | Path) -> RunResult | None:
    """The result of a finished run, or None while it is unfinished."""
    path = Path(run_dir) / RESULT
    if not path.exists():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    data.setdefault("val_score", data["val_auc"])  # runs finished before smoothing existed ranked by the raw AUC
    return RunResult(**data)


def read_run(run_dir: str | Path) -> tuple[RunSpec, ClassifierConfig]:
    """The configuration and settings a run folder was trained with."""
    path = Path(run_dir) / RUN_RECORD
    if not path.exists():
        raise MissingInputError(f"{run_dir}: not a classifier run folder (no {RUN_RECORD}); give the folder of "
                                f"`osteomet deep train` or `osteomet deep grid`")
    data = json.loads(path.read_text(encoding="utf-8"))
    return RunSpec(**data["spec"]), ClassifierConfig.model_validate(data["config"])


def train_run(preprocessed: str | Path, run_dir: str | Path, config: ClassifierConfig, spec: RunSpec, *,
              train_labels: Mapping[str, int], val_labels: Mapping[str, int], resume: bool = False,
              device: str | None = None, on_epoch: Callable[[int, dict], None] | None = None) -> RunResult:
    """Train ``spec`` on ``train_labels``' patients, stop early on ``val_labels``' AUC.

    With ``resume`` a finished run returns its result, an unfinished one continues from ``last.pt``
    and a folder without one is an error; without it an existing run is refused.
    """
    root, run_dir = Path(preprocessed), Path(run_dir)
    for split, labels in (("training", train_labels), ("validation", val_labels)):
        values = {int(v) for v in labels.values()}
        if values != {0, 1}:
            raise InputError(f"{root}: the {split} patients with ROI crops need both classes for "
                             f"{'a loss' if split == 'training' else 'an AUC'} (got labels {sorted(values)})")
    if resume:
        done = read_result(run_dir)
        if done is not None:
            return done
    dev = pick_device(device)
    seed_weights(config.seed)
    model = build_resnet(spec.depth, config.resnet).to(dev)
    optimizer = make_optimizer(model, spec, config)
    targets = np.array(list(train_labels.values()), dtype=np.float32)
    pos_weight = None
    if config.class_weighting:
        pos_weight = torch.tensor([(targets == 0).sum() / (targets == 1).sum()], dtype=torch.float32, device=dev)
    loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)

    if resume and run_started(run_dir):
        saved_spec, saved_config = read_run(run_dir)
        if saved_spec != spec or saved_config != config:
            raise InputError(f"{run_dir}: was started as {saved_spec.name} with other settings than given now; "
                             f"resume it with the same configuration or use a new folder")
    plan = Plan.of(config, learning_rate=spec.learning_rate, chained_cosine=True)
    run = TrainingRun(run_dir, model, optimizer, plan, score="val_auc",
                      columns=("epoch", "train_loss", "val_auc", "val_auc_smoothed", "lr", "seconds"),
                      what=f"a classifier run ({spec.name})", resume=resume, device=dev)
    precision = resolve_precision(config.precision, dev.type)
    if resume and run_started(run_dir):  # a resumed run keeps the arithmetic it began with, even on another host
        saved = read_json(run_dir / RUN_RECORD) or {}
        precision = {k: str(saved[k]) for k in ("precision", "reason") if k in saved} or precision
    write_json_atomic(run_dir / RUN_RECORD, {"spec": asdict(spec), "name": spec.name,
                                           "config": config.model_dump(mode="json"), **precision})

    train_set = RoiDataset(root, list(train_labels), targets.tolist(), config, augment=True)
    val_set = RoiDataset(root, list(val_labels), None, config, augment=False)
    val_y = np.array(list(val_labels.values()), dtype=int)

    def epoch(index: int, _validate: bool) -> EpochResult:
        train_set.set_epoch(index)
        loader = torch.utils.data.DataLoader(train_set, batch_size=config.batch_size, shuffle=True,
                                             generator=epoch_generator(config.seed, index),
                                             num_workers=config.num_workers)
        model.train()
        losses = [train_step(model, optimizer, loss_fn, x.to(dev), y.to(dev), precision=precision["precision"])
                  for x, y in loader]
        score = _validation_auc(val_y, predict_probabilities(model, val_set, dev, config.batch_size))
        return EpochResult(float(np.mean(losses)), score)

    run.train(epoch, on_epoch)
    stopper, history = run.stopper, run.history

    if best_checkpoint(run_dir).exists():
        model.load_state_dict(load_state(best_checkpoint(run_dir), dev)["model"])
        summary = validation_summary(val_y, predict_probabilities(model, val_set, dev, config.batch_size),
                                     config.threshold)
    else:  # diverged from the first epoch on (non-finite outputs): recorded, never the winner
        summary = {"val_auc": math.nan, "val_auc_low": math.nan, "val_auc_high": math.nan, "val_acc": math.nan,
                   "n_val": int(val_y.size), "n_val_positive": int(val_y.sum())}
    result = RunResult(name=spec.name, depth=spec.depth, optimizer=spec.optimizer, learning_rate=spec.learning_rate,
                       **summary, best_epoch=stopper.best_epoch, epochs_run=len(history),
                       stopped_early=stopper.exhausted,
                       seconds=round(float(sum(h["seconds"] for h in history)), 3),
                       val_score=float(stopper.best) if math.isfinite(stopper.best) else math.nan)
    write_json_atomic(run_dir / RESULT, asdict(result))  # written last: marks the run finished
    return result


def _validation_auc(labels: np.ndarray, probs: np.ndarray) -> float:
    """AUC of an epoch; NaN when training diverged (non-finite outputs), which never counts as best."""
    from osteomet.evaluation import auc

    return float(auc(labels, probs)) if np.isfinite(probs).all() else math.nan
