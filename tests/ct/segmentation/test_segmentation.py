"""CT lesion segmentation: the three MONAI 2D networks, learning, NIfTI in CT geometry, metrics, model comparison."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch
from scipy import stats
from statsmodels.stats.multitest import multipletests

from osteomet.ct.segmentation.compare import compare_segmentations, read_metrics
from osteomet.ct.segmentation.config import load_segmentation_config
from osteomet.ct.segmentation.infer import predict_segmentation
from osteomet.ct.segmentation.models import build_segmenter
from osteomet.ct.segmentation.patches import PatchSampler
from osteomet.ct.segmentation.train import load_segmenter, train_segmenter, untrained_val_dice, volume_probabilities
from osteomet.ct.slices.cache import SliceStore
from osteomet.ct.slices.run import prepare_slice_run
from osteomet.data.geometry import Geometry
from osteomet.data.images import read_image
from osteomet.data.manifest import read_manifest
from osteomet.data.synth.ct import CTSynthConfig, generate_ct_cohort

ARCHITECTURE = "unet"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, easy_lesions: CTSynthConfig) -> dict:
    """A tiny 2D UNet trained once on a 10-patient synthetic cohort."""
    base = tmp_path_factory.mktemp("ct_segmentation")
    manifest_path = generate_ct_cohort(base / "cohort", 10, seed=11, config=easy_lesions)
    # per_architecture cleared: these tests change the shared patches_per_epoch, which an own one would override
    config = load_segmentation_config("tiny").model_copy(update={"max_epochs": 6, "patience": 6,
                                                                 "patches_per_epoch": 256, "per_architecture": {}})
    run = base / "run"
    root, config = prepare_slice_run(read_manifest(manifest_path), run, config, architectures=[ARCHITECTURE])
    baseline = untrained_val_dice(root, ARCHITECTURE, config)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # predictable on a shared 2-core machine
    try:
        result = train_segmenter(root, run, config, ARCHITECTURE)
    finally:
        torch.set_num_threads(threads)
    return {"manifest": manifest_path, "run": run, "root": root, "config": config, "baseline": baseline,
            "result": result}


@pytest.mark.parametrize("architecture", ["unet", "resunet", "attention_unet"])
def test_networks_give_two_class_maps_at_the_lesion_prior(architecture: str) -> None:
    config = load_segmentation_config("tiny")
    torch.manual_seed(0)
    model = build_segmenter(architecture, config).eval()
    with torch.no_grad():
        out = model(torch.rand(2, config.in_channels, 64, 64))  # the slice and its neighbours
    assert out.shape == (2, 2, 64, 64)
    # output bias starts at the foreground prior, so the untrained net predicts lesion rarely
    assert torch.softmax(out, 1)[:, 1].mean().item() < 0.1
    residual = any("residual" in name for name, _ in model.named_modules())
    assert residual == (architecture == "resunet")


def test_an_architecture_trains_and_loads_with_its_own_width_and_patch_count(trained: dict, tmp_path: Path) -> None:
    """per_architecture: one network's channels and patches per epoch, used by training and by loading for prediction."""
    config = type(trained["config"]).model_validate({
        **trained["config"].model_dump(), "max_epochs": 1, "hard_negatives": 0,
        "per_architecture": {ARCHITECTURE: {"channels": (8, 16, 32), "patches_per_epoch": 16}}})
    train_segmenter(trained["root"], tmp_path, config, ARCHITECTURE)
    assert pd.read_csv(tmp_path / ARCHITECTURE / "history.csv")["patches"].tolist() == [16]
    model = load_segmenter(tmp_path, ARCHITECTURE, config, torch.device("cpu"))
    assert next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).out_channels == 8
    assert config.channels == (16, 32, 64)  # the shared setting is left as it was
    with pytest.raises(ValueError, match="per_architecture: attention_unet: strides needs one entry fewer"):
        type(config).model_validate({**config.model_dump(), "per_architecture": {"attention_unet": {"channels": [8]}}})


def test_patches_are_lesion_centred_or_in_bone_and_reproducible(trained: dict) -> None:
    store = SliceStore(trained["root"])
    index = pd.read_csv(trained["root"] / "index.csv", dtype={"patient_id": str})
    ids = list(index.loc[index["split"] == "train", "patient_id"].unique())
    size = trained["config"].patch_size
    lesion = PatchSampler(store, ids, size=size, context=1, lesion_fraction=1.0)
    x, y = lesion.draw(24, np.random.default_rng(0), flip_prob=0.0)
    assert x.shape == (24, 3, size, size) and y.shape == (24, 1, size, size)
    # the centre is a lesion voxel moved by at most a quarter patch, so the central half holds lesion
    q = size // 4
    assert all(y[i, 0, q:size - q + 1, q:size - q + 1].any() for i in range(24))
    # random patches are centred on bone (the cached bone region, independent of the lesion mask)
    other = PatchSampler(store, ids, size=size, context=0, lesion_fraction=0.0)
    rng = np.random.default_rng(1)
    for _ in range(10):
        pid, k, cy, cx = other._centre(rng)
        assert store.array(pid, "bone")[k, cy, cx] == 1
    # 'anywhere' patches are centred on any voxel of the crop, so air and organs (which sliding-window
    # inference also shows the network) are trained on too: their centres land off bone about as often
    # as the crop is not bone
    anywhere = PatchSampler(store, ids, size=size, context=0, lesion_fraction=0.0, anywhere_fraction=1.0)
    centres = [anywhere._centre(rng) for _ in range(200)]
    off_bone = np.mean([store.array(pid, "bone")[k, cy, cx] == 0 for pid, k, cy, cx in centres])
    bone_share = np.mean([np.asarray(store.array(pid, "bone")).mean() for pid in ids])
    assert off_bone == pytest.approx(1 - bone_share, abs=0.12)
    # the same generator state gives the same patches (reruns and resumed runs see the same data)
    again, _ = lesion.draw(24, np.random.default_rng(0), flip_prob=0.0)
    assert np.array_equal(x, again)


def test_hard_negatives_are_the_patches_with_most_false_lesion(trained: dict) -> None:
    store = SliceStore(trained["root"])
    index = pd.read_csv(trained["root"] / "index.csv", dtype={"patient_id": str})
    ids = list(index.loc[index["split"] == "train", "patient_id"].unique())
    sampler = PatchSampler(store, ids, size=trained["config"].patch_size, context=1, lesion_fraction=0.0,
                           anywhere_fraction=0.5)

    window = trained["config"].slices
    bright = (580.0 - (window.window_level - window.window_width / 2)) / window.window_width  # 580 HU

    def score(x: np.ndarray) -> np.ndarray:  # a stand-in network: "lesion" wherever the slice is bright
        return (x[:, 1] > bright).astype(np.float32)

    # reference by brute force over the same draws: bright voxels outside the reference lesion per patch
    rng = np.random.default_rng(5)
    centres = [sampler._other(rng) for _ in range(40)]
    false = []
    for c in centres:
        image, label = sampler.patch(*c)
        false.append(int(((image[1] > bright) & (label[0] == 0)).sum()))
    expected = {c for c, f in sorted(zip(centres, false), key=lambda t: -t[1])[:10] if f > 0}
    sampler.mine_hard_negatives(score, np.random.default_rng(5), pool=40, keep=10)
    assert set(sampler.hard) == expected and len(expected) > 0
    # once mined, about half of the non-lesion patches are drawn from them
    picks = [sampler._centre(np.random.default_rng(i)) for i in range(200)]
    assert 0.35 < np.mean([p in expected for p in picks]) < 0.65


def test_sliding_window_covers_the_whole_crop(trained: dict) -> None:
    from osteomet.ct.segmentation.train import load_segmenter

    store = SliceStore(trained["root"])
    pid = pd.read_csv(trained["root"] / "index.csv", dtype={"patient_id": str})["patient_id"].iloc[0]
    image = np.asarray(store.array(pid, "image")[:5])
    model = load_segmenter(trained["run"], ARCHITECTURE, trained["config"], torch.device("cpu"))
    probability = volume_probabilities(model, image, trained["config"], torch.device("cpu"))
    assert probability.shape == image.shape and np.isfinite(probability).all()
    assert probability.min() >= 0 and probability.max() <= 1


def test_no_lesion_is_predicted_away_from_bone(trained: dict) -> None:
    """Lesions are bone lesions: beyond ``bone_only_mm`` of the cached bone region the probability is 0."""
    from scipy import ndimage

    from osteomet.ct.segmentation.train import lesion_region, load_segmenter

    store = SliceStore(trained["root"])
    config = trained["config"]
    pid = pd.read_csv(trained["root"] / "index.csv", dtype={"patient_id": str})["patient_id"].iloc[0]
    image, bone = np.asarray(store.array(pid, "image")[10:14]), np.asarray(store.array(pid, "bone")[10:14])
    model = load_segmenter(trained["run"], ARCHITECTURE, config, torch.device("cpu"))
    region = lesion_region(bone, store.spacing(pid), config)
    free = volume_probabilities(model, image, config, torch.device("cpu"))
    kept = volume_probabilities(model, image, config, torch.device("cpu"), region=region)
    # independent reference: in-plane Euclidean distance to bone in mm
    distance = np.stack([ndimage.distance_transform_edt(b == 0, sampling=store.spacing(pid)[::-1]) for b in bone])
    far, near = distance > config.bone_only_mm + 1e-6, distance <= config.bone_only_mm - 1e-6
    assert far.any() and np.all(kept[far] == 0)
    assert np.allclose(kept[near], free[near])
    assert lesion_region(bone, store.spacing(pid), config.model_copy(update={"bone_only_mm": None})) is None


def test_tiny_unet_learns(trained: dict) -> None:
    from osteomet.evaluation.segmentation import overlap

    result = trained["result"]
    history = pd.read_csv(trained["run"] / ARCHITECTURE / "history.csv")
    assert result.best_score >= trained["baseline"] + 0.25, (result.best_score, trained["baseline"])
    # and beats the trivial rule "sclerotic = bone voxel at >= 500 HU" (cortex included) on the same patients
    store = SliceStore(trained["root"])
    index = pd.read_csv(trained["root"] / "index.csv", dtype={"patient_id": str})
    window = trained["config"].slices
    cut = (500.0 - (window.window_level - window.window_width / 2)) / window.window_width
    rule = [overlap((np.asarray(store.array(p, "image")) >= cut) & (np.asarray(store.array(p, "bone")) > 0),
                    np.asarray(store.array(p, "mask")))["dice"]
            for p in index.loc[index["split"] == "val", "patient_id"].unique()]
    assert result.best_score >= np.mean(rule) + 0.2, (result.best_score, np.mean(rule))
    # the tiny preset keeps the final epoch's weights (nnU-Net's choice): the whole schedule ran
    assert trained["config"].weights == "final"
    assert result.epochs_run == trained["config"].max_epochs == len(history)
    assert result.best_epoch == int(history["epoch"].iloc[-1])
    state = torch.load(trained["run"] / ARCHITECTURE / "checkpoints" / "best.pt", weights_only=True)
    assert state["epoch"] == result.best_epoch and state["val_dice"] == pytest.approx(history["val_dice"].iloc[-1])


def test_best_weights_are_those_of_the_highest_validation_dice(trained: dict, tmp_path: Path) -> None:
    config = trained["config"].model_copy(update={"patches_per_epoch": 48, "max_epochs": 3, "weights": "best"})
    result = train_segmenter(trained["root"], tmp_path, config, ARCHITECTURE)
    history = pd.read_csv(tmp_path / ARCHITECTURE / "history.csv")
    assert result.best_epoch == int(history["val_dice"].to_numpy().argmax())
    state = torch.load(tmp_path / ARCHITECTURE / "checkpoints" / "best.pt", weights_only=True)
    assert state["epoch"] == result.best_epoch


def test_validating_every_few_epochs_trains_the_same_weights(trained: dict, tmp_path: Path) -> None:
    """Validation only monitors with weights: final, so skipping it changes the history, not the network."""
    config = trained["config"].model_copy(update={"patches_per_epoch": 32, "max_epochs": 3, "hard_negatives": 8,
                                                  "weights": "final"})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        every = train_segmenter(trained["root"], tmp_path / "every", config, ARCHITECTURE)
        sparse = train_segmenter(trained["root"], tmp_path / "sparse", config.model_copy(update={"validate_every": 2}),
                                 ARCHITECTURE)
    finally:
        torch.set_num_threads(threads)
    history = pd.read_csv(tmp_path / "sparse" / ARCHITECTURE / "history.csv")
    assert history["val_dice"].isna().tolist() == [True, False, False]  # epoch 2 (every 2nd) is also the last
    assert sparse.best_epoch == 2 and sparse.best_score == pytest.approx(every.best_score)
    a = torch.load(tmp_path / "every" / ARCHITECTURE / "checkpoints" / "best.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "sparse" / ARCHITECTURE / "checkpoints" / "best.pt", weights_only=True)["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    with pytest.raises(ValueError, match="needs weights: final"):  # pydantic wraps it; YAML loading names the file
        type(config).model_validate({**config.model_dump(), "weights": "best", "validate_every": 2})


def test_predict_writes_masks_on_the_ct_grid_with_independent_metrics(trained: dict, tmp_path: Path) -> None:
    manifest = read_manifest(trained["manifest"])
    table = predict_segmentation(manifest, trained["run"], tmp_path, cache=trained["root"])
    assert len(table) == len(manifest)
    for row in table.itertuples():
        record = manifest.get(row.patient_id)
        predicted = sitk.ReadImage(row.mask)
        ct = sitk.ReadImage(str(record.ct))
        assert Geometry.of(predicted).differences(Geometry.of(ct)) == []
        p = sitk.GetArrayFromImage(predicted).astype(bool)
        r = sitk.GetArrayFromImage(sitk.ReadImage(str(record.lesion_mask))).astype(bool)
        if p.any() or r.any():
            assert row.dice == pytest.approx(2 * (p & r).sum() / (p.sum() + r.sum()))
        else:
            assert row.dice == 1.0
    on_test = table[table["split"] == "test"]
    assert len(on_test) > 0
    assert pd.read_csv(tmp_path / ARCHITECTURE / "metrics.csv").shape[0] == len(manifest)


def test_resume_continues_to_the_same_weights_as_an_uninterrupted_run(trained: dict, tmp_path: Path) -> None:
    # epoch 1 mines hard negatives with the weights it starts from, so a resume must mine the same ones
    config = trained["config"].model_copy(update={"patches_per_epoch": 32, "max_epochs": 2, "hard_negatives": 8})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_segmenter(trained["root"], tmp_path / "whole", config, ARCHITECTURE)
        train_segmenter(trained["root"], tmp_path / "cut", config.model_copy(update={"max_epochs": 1}), ARCHITECTURE)
        with pytest.raises(FileExistsError, match="--resume"):
            train_segmenter(trained["root"], tmp_path / "cut", config, ARCHITECTURE)
        resumed = train_segmenter(trained["root"], tmp_path / "cut", config, ARCHITECTURE, resume=True)
    finally:
        torch.set_num_threads(threads)
    assert resumed.epochs_run == 2
    whole = torch.load(tmp_path / "whole" / ARCHITECTURE / "checkpoints" / "last.pt", weights_only=True)["model"]
    cut = torch.load(tmp_path / "cut" / ARCHITECTURE / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.allclose(whole[k], cut[k], atol=1e-6) for k in whole)
    history = pd.read_csv(tmp_path / "cut" / ARCHITECTURE / "history.csv")
    assert history["epoch"].tolist() == [0, 1]


def test_comparison_matches_scipy_and_statsmodels(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    n = 12
    base = rng.uniform(0.4, 0.8, n)
    per_patient = pd.concat([
        pd.DataFrame({"patient_id": [f"P{i}" for i in range(n)], "split": "test", "model": name,
                      "dice": np.clip(base + shift + rng.normal(0, 0.05, n), 0, 1),
                      "precision": rng.uniform(0.5, 1, n), "recall": rng.uniform(0.5, 1, n)})
        for name, shift in (("unet", 0.0), ("resunet", 0.03), ("attention_unet", 0.1))])
    files = []
    for name, part in per_patient.groupby("model"):
        files.append(tmp_path / f"{name}.csv")
        part.to_csv(files[-1], index=False)
    results = compare_segmentations(read_metrics(files), tmp_path / "cmp")
    pairwise = pd.read_csv(tmp_path / "cmp" / "pairwise_dice.csv")
    wide = per_patient.pivot(index="patient_id", columns="model", values="dice")
    t_p = [stats.ttest_rel(wide[a], wide[b]).pvalue for a, b in zip(pairwise["model_a"], pairwise["model_b"])]
    w_p = [stats.wilcoxon(wide[a], wide[b]).pvalue for a, b in zip(pairwise["model_a"], pairwise["model_b"])]
    assert np.allclose(pairwise["t_p"], t_p) and np.allclose(pairwise["wilcoxon_p"], w_p)
    assert np.allclose(pairwise["t_p_adj"], multipletests(t_p, method="holm")[1])
    assert np.allclose(pairwise["wilcoxon_p_adj"], multipletests(w_p, method="holm")[1])
    summary = results["summary"].set_index(["model", "metric"])
    assert summary.loc[("unet", "dice"), "mean"] == pytest.approx(wide["unet"].mean())
    # the mean's bootstrap CI brackets it and is about +/- 1.96 standard errors wide (normal theory)
    row = summary.loc[("attention_unet", "dice")]
    se = wide["attention_unet"].std(ddof=1) / np.sqrt(n)
    assert row["ci_low"] < row["mean"] < row["ci_high"]
    assert (row["ci_high"] - row["ci_low"]) == pytest.approx(2 * 1.96 * se, rel=0.3)
    assert (tmp_path / "cmp" / "boxplot_dice.png").stat().st_size > 1000


def test_duplicate_patient_in_metrics_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    pd.DataFrame({"patient_id": ["A", "A"], "model": ["unet", "unet"], "dice": [0.5, 0.6]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="'A'.*twice"):
        read_metrics([path])


@pytest.mark.shared_data
def test_real_ct_nifti_and_dicom_go_through_segmentation_predict(trained: dict, real_ct_manifest: Path,
                                                                 tmp_path: Path) -> None:
    manifest = read_manifest(real_ct_manifest)
    table = predict_segmentation(manifest, trained["run"], tmp_path / "pred")
    for row in table.itertuples():
        record = manifest.get(row.patient_id)
        ct = read_image(record.ct)  # the DICOM series for TSDICOM
        predicted = sitk.ReadImage(row.mask)
        assert Geometry.of(predicted).differences(Geometry.of(ct)) == []
        assert np.isfinite(row.dice) and 0 <= row.dice <= 1
