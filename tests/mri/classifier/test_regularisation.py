"""What keeps the classifier from memorising a small cohort: dropout, translation, noise, smoothed selection."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from osteomet.data.manifest import read_manifest
from osteomet.mri.classifier.config import ClassifierConfig, ResNetConfig
from osteomet.mri.classifier.data import augmentations, roi_patients, split_ids
from osteomet.mri.classifier.grid import select_winner
from osteomet.mri.classifier.model import build_resnet, logits_and_features
from osteomet.mri.classifier.train import RunSpec, train_run

from .conftest import GRID

PLAIN = ClassifierConfig(flip_prob=0.0, rotate90_prob=0.0, intensity_prob=0.0)


def test_dropout_keeps_monai_weight_names_and_undropped_features():
    plain = build_resnet(10, ResNetConfig(widen_factor=0.25))
    dropped = build_resnet(10, ResNetConfig(widen_factor=0.25, dropout=0.5))
    assert list(dropped.state_dict()) == list(plain.state_dict())  # checkpoints load either way
    dropped.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 16, 32, 32, generator=torch.Generator().manual_seed(0))
    plain.eval(), dropped.eval()
    with torch.no_grad():
        assert torch.equal(plain(x), dropped(x))  # no dropout at inference
        plain.train(), dropped.train()
        _, undropped = logits_and_features(plain, x)
        torch.manual_seed(1)
        logits, features = logits_and_features(dropped, x)
    # the hook sees the pooled activations as they are; only the logit was computed from a dropped-out copy
    assert torch.equal(features, undropped)
    assert not torch.allclose(logits, (features @ dropped.fc.weight.T + dropped.fc.bias).reshape(-1))


def test_translation_moves_the_crop_by_whole_voxels_within_the_range():
    crop = np.zeros((3, 16, 32, 32), dtype=np.float32)
    crop[:, 8, 16, 16] = [1.0, 2.0, 3.0]
    transform = augmentations(PLAIN.model_copy(update={"shift_voxels": 4}), crop.shape)
    offsets = set()
    for seed in range(40):
        transform.set_random_state(seed=seed)
        out = np.asarray(transform(torch.from_numpy(crop.copy())))
        assert out.shape == crop.shape
        where = np.argwhere(out[0] != 0)
        assert len(where) == 1 and out[:, where[0][0], where[0][1], where[0][2]].tolist() == [1.0, 2.0, 3.0]
        offset = tuple(int(v) for v in where[0] - (8, 16, 16))
        assert abs(offset[0]) <= 2 and abs(offset[1]) <= 4 and abs(offset[2]) <= 4
        offsets.add(offset)
    assert len(offsets) > 20  # it does move, in every direction
    assert {np.sign(o[1]) for o in offsets} == {-1, 0, 1}


def test_noise_sd_is_drawn_up_to_the_configured_sd():
    crop = np.zeros((3, 16, 32, 32), dtype=np.float32)
    transform = augmentations(PLAIN.model_copy(update={"noise_std": 0.5, "noise_prob": 1.0}), crop.shape)
    sds = []
    for seed in range(30):
        transform.set_random_state(seed=seed)
        sds.append(float(np.asarray(transform(torch.from_numpy(crop.copy()))).std()))
    assert max(sds) < 0.5 * 1.01 and min(sds) > 0
    assert np.mean(sds) == pytest.approx(0.25, abs=0.07)  # uniform on 0..0.5


def test_selection_starts_at_min_epochs_and_follows_the_smoothed_auc(roi_cohort, tmp_path):
    manifest_path, pre = roi_cohort
    manifest = read_manifest(manifest_path)
    patients = roi_patients(pre, manifest)
    labels = manifest.to_frame().set_index("patient_id")["label"].astype(int)
    train = {p: int(labels[p]) for p in split_ids(patients, "train")}
    val = {p: int(labels[p]) for p in split_ids(patients, "val")}
    config = GRID.model_copy(update={"max_epochs": 4, "patience": 4, "min_epochs": 2, "selection_smoothing": 0.5})
    result = train_run(pre, tmp_path / "run", config, RunSpec(10, "adam", 1e-3), train_labels=train,
                       val_labels=val, device="cpu")
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    expected = [history["val_auc"][0]]
    for value in history["val_auc"][1:]:
        expected.append(0.5 * expected[-1] + 0.5 * value)
    assert history["val_auc_smoothed"].tolist() == pytest.approx(expected)
    late = history[history["epoch"] >= 2]
    assert result.best_epoch == int(late.loc[late["val_auc_smoothed"].idxmax(), "epoch"])
    assert result.val_score == pytest.approx(late["val_auc_smoothed"].max())


def test_the_grid_ranks_by_the_selection_score():
    table = pd.DataFrame({"name": ["a", "b", "c"], "val_auc": [1.0, 0.8, math.nan], "val_score": [0.7, 0.75, math.nan]})
    assert select_winner(table)["name"] == "b"  # a spiked once; b was better over the epochs
