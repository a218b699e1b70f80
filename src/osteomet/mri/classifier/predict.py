"""The chosen classifier applied to every patient: the prediction table.

A model is given as a run folder (``osteomet deep train``) or a grid folder, whose
``winner.json`` names the run the later stages use. The prediction table is the shared
contract: CSV with columns exactly ``patient_id, split, label, model, prob`` (prob = the
probability of bone metastasis; label 0/1, empty when unknown; split from the manifest).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from osteomet.errors import MissingInputError
from osteomet.layout import WINNER
from osteomet.models.predictions import COLUMNS, write_predictions
from osteomet.mri.classifier.config import ClassifierConfig
from osteomet.mri.classifier.data import RoiDataset
from osteomet.mri.classifier.model import build_resnet
from osteomet.mri.classifier.train import RunSpec, predict_probabilities, read_run
from osteomet.training.checkpoint import best_checkpoint, load_weights
from osteomet.utils.torch import pick_device

PREDICTION_COLUMNS = list(COLUMNS)


def resolve_run(model: str | Path) -> Path:
    """The run folder of a model: itself, or the winner of a grid folder."""
    model = Path(model)
    winner = model / WINNER
    if winner.exists():
        return model / json.loads(winner.read_text(encoding="utf-8"))["run"]
    if best_checkpoint(model).exists():
        return model
    raise MissingInputError(f"{model}: neither a grid folder (no winner.json) nor a trained classifier run "
                            f"(no checkpoints/best.pt); run `osteomet deep grid` or `osteomet deep train` first")


def load_model(model: str | Path, device: str | None = None) -> tuple[torch.nn.Module, RunSpec, ClassifierConfig,
                                                                      torch.device]:
    """The best checkpoint of a run (or a grid's winner) in eval mode, with what it was trained with."""
    run = resolve_run(model)
    spec, config = read_run(run)
    dev = pick_device(device)
    network = build_resnet(spec.depth, config.resnet).to(dev)
    load_weights(network, best_checkpoint(run), dev)
    network.eval()
    return network, spec, config, dev


def predict_patients(model: str | Path, preprocessed: str | Path, patients: pd.DataFrame, labels: pd.DataFrame,
                     *, device: str | None = None) -> pd.DataFrame:
    """The prediction table of every patient with a ROI crop (``patients``: roi_patients' table;
    ``labels``: patient_id, label from the manifest)."""
    network, spec, config, dev = load_model(model, device)
    ids = patients.loc[patients["has_roi"], "patient_id"].tolist()
    probs = predict_probabilities(network, RoiDataset(preprocessed, ids, None, config, augment=False), dev,
                                  config.batch_size)
    table = patients.set_index("patient_id").loc[ids, ["split"]].reset_index()
    table = table.merge(labels[["patient_id", "label"]], on="patient_id", how="left")
    table["label"] = table["label"].astype("Int64")
    table["model"] = f"deep_{spec.name}"
    table["prob"] = np.asarray(probs, dtype=float)
    return table[PREDICTION_COLUMNS]


def write_prediction_table(table: pd.DataFrame, path: str | Path) -> Path:
    """The deep model's predictions through the shared contract (:mod:`osteomet.models.predictions`)."""
    return write_predictions(table, path)
