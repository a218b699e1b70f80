"""Slice detection: the three MONAI classifiers, learning on the synthetic CT cohort, metrics, Grad-CAM, real CT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
import torch
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score, roc_curve

from osteomet.ct.detection.config import load_detection_config
from osteomet.ct.detection.gradcam import gradcam_map
from osteomet.ct.detection.infer import predict_detection
from osteomet.ct.detection.models import build_classifier
from osteomet.ct.detection.train import (
    bone_tiles,
    load_detector,
    slice_probabilities,
    smooth_over_slices,
    train_detector,
    untrained_val_auc,
)
from osteomet.ct.slices.dataset import read_index
from osteomet.ct.slices.run import labelled_split, prepare_slice_run
from osteomet.data.images import read_image
from osteomet.data.manifest import read_manifest
from osteomet.data.synth.ct import CTSynthConfig, generate_ct_cohort

ARCHITECTURE = "densenet121"  # the fastest of the three on CPU


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, easy_lesions: CTSynthConfig) -> dict:
    """A tiny DenseNet121 trained once on a 14-patient synthetic cohort (4 short epochs, best epoch kept)."""
    base = tmp_path_factory.mktemp("ct_detection")
    manifest_path = generate_ct_cohort(base / "cohort", 14, seed=7, config=easy_lesions)
    # per_architecture cleared: the tests below change the shared tiles_per_epoch, which an own one would override
    config = load_detection_config("tiny").model_copy(update={"max_epochs": 4, "patience": 4, "tiles_per_epoch": 1024,
                                                              "per_architecture": {}, "weights": "best",
                                                              "validate_every": 1})
    run = base / "run"
    root, config = prepare_slice_run(read_manifest(manifest_path), run, config, architectures=[ARCHITECTURE])
    baseline = untrained_val_auc(root, ARCHITECTURE, config)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # predictable on a shared 2-core machine (no OpenMP spinning against other jobs)
    try:
        result = train_detector(root, run, config, ARCHITECTURE)
    finally:
        torch.set_num_threads(threads)
    return {"manifest": manifest_path, "run": run, "root": root, "config": config, "baseline": baseline,
            "result": result, "base": base}


@pytest.mark.parametrize("architecture", ["efficientnet-b0", "resnet34", "densenet121"])
def test_classifiers_give_one_logit_per_slice(architecture: str) -> None:
    torch.manual_seed(0)
    model = build_classifier(architecture, in_channels=3, width=0.25).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 64, 64))
    assert out.shape == (2, 1)
    heat = gradcam_map(model, architecture, np.random.default_rng(0).random((3, 64, 64)), torch.device("cpu"))
    assert heat.shape == (64, 64) and np.isfinite(heat).all() and heat.min() >= 0 and heat.max() <= 1


def test_slice_scores_are_averaged_with_their_own_patients_neighbouring_slices() -> None:
    table = pd.DataFrame({"patient_id": ["A", "A", "B", "A", "B", "A"], "slice": [0, 1, 0, 2, 1, 5]})
    p = np.array([0.9, 0.3, 0.2, 0.6, 0.4, 0.8])
    # by hand: A0 (A0, A1), A1 (A0..A2), B0 (B0, B1), A2 (A1, A2; A3 is not in the table), B1 (B0, B1), A5 alone
    expected = [(0.9 + 0.3) / 2, (0.9 + 0.3 + 0.6) / 3, 0.3, (0.3 + 0.6) / 2, 0.3, 0.8]
    assert smooth_over_slices(table, p, 1) == pytest.approx(expected)
    assert smooth_over_slices(table, p, 0) == pytest.approx(p)
    assert smooth_over_slices(table.set_index(pd.Index([7, 3, 9, 1, 0, 2])), p, 1) == pytest.approx(expected)


def test_peak_to_lesion_distance_is_in_millimetres() -> None:
    from osteomet.ct.detection.gradcam import peak_to_lesion_mm

    heat, mask = np.zeros((20, 20)), np.zeros((20, 20), bool)
    mask[5:8, 5:8] = True
    heat[7, 15] = 1.0  # peak 8 pixels right of the lesion's last column (x = 7)
    assert peak_to_lesion_mm(heat, mask, 1.5) == pytest.approx(12.0)
    heat[:] = 0
    heat[6, 6] = 1.0
    assert peak_to_lesion_mm(heat, mask, 1.5) == 0.0
    assert np.isnan(peak_to_lesion_mm(np.zeros((20, 20)), mask, 1.5))  # empty map: no peak


def test_unknown_architecture_is_refused() -> None:
    with pytest.raises(ValueError, match="vgg"):
        build_classifier("vgg")


def test_tiny_detector_learns_and_keeps_the_best_epoch(trained: dict) -> None:
    result = trained["result"]
    history = pd.read_csv(trained["run"] / ARCHITECTURE / "history.csv")
    # the network learned: validation AUC above the untrained network's (a strong baseline here: on
    # bone-only squares, random features already track how much bright bone a slice holds)
    # (4 epochs on 14 patients, one in five lesion-free: about 0.80 against 0.63 untrained)
    assert result.best_score >= trained["baseline"] + 0.1, (result.best_score, trained["baseline"])
    # and beats the trivial rule "the more sclerotic-bright bone (>= 500 HU) on a slice, the likelier a lesion"
    from osteomet.ct.slices.cache import SliceStore
    from osteomet.evaluation.roc import auc

    store = SliceStore(trained["root"])
    index = pd.read_csv(trained["root"] / "index.csv", dtype={"patient_id": str})
    val = index[index["split"] == "val"]
    window = trained["config"].slices
    cut = (500.0 - (window.window_level - window.window_width / 2)) / window.window_width
    bright = [int(((np.asarray(store.array(p, "image")[k]) >= cut) & (np.asarray(store.array(p, "bone")[k]) > 0)).sum())
              for p, k in zip(val["patient_id"], val["slice"])]
    # scored as the model's slices are (averaged with their neighbours, slice_smoothing in the config)
    rule = auc(val["label"].to_numpy(), smooth_over_slices(val, np.asarray(bright, float),
                                                           trained["config"].slice_smoothing))
    assert result.best_score >= rule + 0.1, (result.best_score, rule)  # the rule gives about 0.62 here
    # best checkpoint = the epoch of the highest validation AUC (first one on ties)
    assert result.best_epoch == int(history["val_auc"].to_numpy().argmax())
    state = torch.load(trained["run"] / ARCHITECTURE / "checkpoints" / "best.pt", weights_only=True)
    assert state["epoch"] == result.best_epoch


def test_an_architecture_trains_and_loads_with_its_own_width_and_tile_count(trained: dict, tmp_path: Path) -> None:
    """per_architecture: one detector's width and tiles per epoch, used by training and by loading for prediction."""
    config = type(trained["config"]).model_validate({
        **trained["config"].model_dump(), "max_epochs": 1, "hard_negatives": 0,
        "per_architecture": {ARCHITECTURE: {"width": 0.125, "tiles_per_epoch": 64}}})
    train_detector(trained["root"], tmp_path, config, ARCHITECTURE)
    assert pd.read_csv(tmp_path / ARCHITECTURE / "history.csv")["tiles"].tolist() == [64]
    model, _ = load_detector(tmp_path, ARCHITECTURE, config, torch.device("cpu"))
    narrow = build_classifier(ARCHITECTURE, config.in_channels, 0.125)
    assert [p.shape for p in model.parameters()] == [p.shape for p in narrow.parameters()]
    assert config.width == 0.25  # the shared setting is left as it was
    with pytest.raises(ValueError, match="per_architecture.resnet34.width\n  Input should be less than or equal to 1"):
        type(config).model_validate({**config.model_dump(), "per_architecture": {"resnet34": {"width": 2}}})


def test_final_weights_keep_the_last_epoch_and_its_threshold(trained: dict, tmp_path: Path) -> None:
    """``weights: final`` runs the whole schedule and keeps the last epoch's weights and Youden threshold."""
    from osteomet.evaluation.roc import youden_threshold

    config = trained["config"].model_copy(update={"tiles_per_epoch": 64, "max_epochs": 3, "patience": 1,
                                                  "weights": "final"})
    result = train_detector(trained["root"], tmp_path, config, ARCHITECTURE)
    history = pd.read_csv(tmp_path / ARCHITECTURE / "history.csv")
    assert result.epochs_run == 3 == len(history) and not result.stopped_early  # patience 1 did not stop it
    assert result.best_epoch == 2 and result.best_score == pytest.approx(history["val_auc"].iloc[-1])
    state = torch.load(tmp_path / ARCHITECTURE / "checkpoints" / "best.pt", weights_only=True)
    assert state["epoch"] == 2
    # the threshold is the Youden cut of the final weights' own validation probabilities
    model, threshold = load_detector(tmp_path, ARCHITECTURE, config, torch.device("cpu"))
    val = labelled_split(read_index(trained["root"]), "val")
    probabilities = slice_probabilities(model, bone_tiles(trained["root"], config), val, config.batch_size,
                                        torch.device("cpu"), config.slice_smoothing)
    assert threshold == pytest.approx(youden_threshold(val["label"].to_numpy(), probabilities))
    saved = json.loads((tmp_path / ARCHITECTURE / "threshold.json").read_text(encoding="utf-8"))
    assert saved["weights"] == "final" and saved["best_epoch"] == 2 and saved["threshold"] == pytest.approx(threshold)
    # validation only monitors then, so running it every other epoch (and at the last) trains the same network
    sparse = train_detector(trained["root"], tmp_path / "sparse", config.model_copy(update={"validate_every": 2}),
                            ARCHITECTURE)
    assert pd.read_csv(tmp_path / "sparse" / ARCHITECTURE / "history.csv")["val_auc"].isna().tolist() == [
        True, False, False]
    assert sparse.best_epoch == 2 and sparse.best_score == pytest.approx(result.best_score)
    assert sparse.threshold == pytest.approx(threshold)
    with pytest.raises(ValueError, match="needs weights: final"):
        type(config).model_validate({**config.model_dump(), "weights": "best", "validate_every": 2})


def test_predict_metrics_match_sklearn_and_threshold_comes_from_validation(trained: dict, tmp_path: Path) -> None:
    out = tmp_path / "pred"
    predict_detection(read_manifest(trained["manifest"]), trained["run"], out, cache=trained["root"], n_resamples=200)
    folder = out / ARCHITECTURE
    slices = pd.read_csv(folder / "slice_scores.csv")
    patients = pd.read_csv(folder / "patient_scores.csv")
    metrics = pd.read_csv(folder / "metrics.csv")
    threshold = float(metrics["threshold"].iloc[0])
    # the threshold is Youden's on the validation slices (independent: sklearn's ROC curve)
    val = slices[slices["split"] == "val"]
    fpr, tpr, cuts = roc_curve(val["label"], val["probability"])
    best_cut = cuts[int(np.argmax(tpr - fpr))]
    assert ((val["probability"] >= threshold) == (val["probability"] >= best_cut)).all()
    # patient score = max slice probability, label = any lesion slice
    expected = slices.groupby("patient_id").agg(score=("probability", "max"), label=("label", "max"))
    got = patients.set_index("patient_id").loc[expected.index]
    assert np.allclose(got["score"], expected["score"]) and (got["label"] == expected["label"]).all()
    # slice-level estimates on the test split equal sklearn's at the validation threshold
    test = slices[slices["split"] == "test"]
    called = (test["probability"] >= threshold).astype(int)
    row = metrics[(metrics["level"] == "slice") & (metrics["split"] == "test")].set_index("metric")
    assert row.loc["auc", "estimate"] == pytest.approx(roc_auc_score(test["label"], test["probability"]))
    assert row.loc["precision", "estimate"] == pytest.approx(precision_score(test["label"], called, zero_division=np.nan))
    assert row.loc["recall", "estimate"] == pytest.approx(recall_score(test["label"], called))
    assert row.loc["f1", "estimate"] == pytest.approx(f1_score(test["label"], called))
    from osteomet.evaluation.bootstrap import MIN_CLUSTERS

    if test["patient_id"].nunique() >= MIN_CLUSTERS:  # cluster bootstrap over patients
        assert (row["ci_low"] <= row["estimate"] + 1e-12).all() and (row["estimate"] <= row["ci_high"] + 1e-12).all()
    else:  # too few test patients for an interval: none is made up
        assert row[["ci_low", "ci_high"]].isna().all().all()
    assert set(metrics["level"]) == {"slice", "patient"}
    overlays = pd.read_csv(folder / "gradcam" / "index.csv")
    assert all(Path(p).is_file() for p in overlays["png"].dropna())  # overlays of the most confident only
    assert set(overlays["kind"]) <= {"true_positive", "false_positive"}
    confident_hits = overlays[(overlays["kind"] == "true_positive") & (overlays["probability"] > 0.9)]
    assert len(confident_hits) and not confident_hits["cam_empty"].any()  # a confident call has evidence somewhere
    # true positives carry the Grad-CAM peak-to-lesion distance (NaN only for an empty map or a deciding
    # tile without lesion); most of these easy lesions are in the deciding tile; the summary counts them
    tp = overlays[overlays["kind"] == "true_positive"]
    assert not tp.loc[tp["cam_empty"], "cam_lesion_mm"].notna().any()
    assert (tp["cam_lesion_mm"].dropna() >= 0).all() and tp["cam_lesion_mm"].notna().mean() > 0.5
    summary = json.loads((folder / "gradcam" / "localisation.json").read_text(encoding="utf-8"))
    assert summary["true_positives"] == len(tp) and summary["within"] == int((tp["cam_lesion_mm"] <= 10).sum())
    # one comparison row per level and split, carrying the per-detector metrics unchanged
    comparison = pd.read_csv(out / "comparison.csv")
    test_row = comparison[(comparison["level"] == "slice") & (comparison["split"] == "test")].iloc[0]
    assert test_row["auc"] == pytest.approx(row.loc["auc", "estimate"]) and test_row["threshold"] == threshold
    assert (out / "boxplot_patient_scores.png").is_file()


@pytest.mark.shared_data
def test_real_ct_nifti_and_dicom_go_through_detection_predict(trained: dict, real_ct_manifest: Path,
                                                              tmp_path: Path) -> None:
    manifest = read_manifest(real_ct_manifest)
    out = tmp_path / "pred"
    predict_detection(manifest, trained["run"], out, n_resamples=50)
    slices = pd.read_csv(out / ARCHITECTURE / "slice_scores.csv")
    for record in manifest:
        n_slices = read_image(record.ct).GetSize()[2]
        part = slices[slices["patient_id"] == record.patient_id]
        assert len(part) == n_slices and part["probability"].between(0, 1).all()
        assert (part["split"] == "new").all()  # patients unknown to the training run
        lesion = sitk.GetArrayFromImage(sitk.ReadImage(str(record.lesion_mask)))
        assert part["label"].sum() == int((lesion.reshape(n_slices, -1).sum(axis=1) > 0).sum()) > 0


def test_bone_centred_negatives_sit_on_bone_within_the_lesion_tiles_jitter(trained: dict) -> None:
    from osteomet.ct.detection.tiles import TileSampler
    from osteomet.ct.detection.train import bone_tiles

    tiles = bone_tiles(trained["root"], trained["config"])
    index = pd.read_csv(trained["root"] / "index.csv", dtype={"patient_id": str})
    ids = list(pd.unique(index.loc[index["split"] == "train", "patient_id"]))
    sampler = TileSampler(tiles, ids, positive_fraction=0.2, bone_centred_fraction=1.0)
    rng = np.random.default_rng(3)
    on_bone_centre, on_grid_centre = [], []
    for _ in range(200):
        pid, k, cy, cx = sampler.bone_centred_tile(rng)
        bone = np.asarray(tiles.store.array(pid, "bone")[k]) > 0
        q = tiles.side_px(pid) // 4
        assert bone[max(cy - q, 0):cy + q + 1, max(cx - q, 0):cx + q + 1].any(), (pid, k, cy, cx)  # jitter <= q
        on_bone_centre.append(bone[min(max(cy, 0), bone.shape[0] - 1), min(max(cx, 0), bone.shape[1] - 1)])
        gp, gk, gy, gx = sampler.grid_tile(rng)
        on_grid_centre.append(bool(np.asarray(tiles.store.array(gp, "bone")[gk])[gy, gx] > 0))
    # the point of them: bone at the centre far more often than the inference grid's tiles have it
    assert np.mean(on_bone_centre) > np.mean(on_grid_centre) + 0.1, (np.mean(on_bone_centre), np.mean(on_grid_centre))
    x, y = sampler.draw(32, rng, flip_prob=0.5)
    assert x.shape[0] == 32 and set(np.unique(y)) <= {0.0, 1.0}


def test_training_refuses_an_index_that_splits_a_patient(trained: dict, tmp_path: Path) -> None:
    from osteomet.data.splits import SplitLeakageError

    index = pd.read_csv(trained["root"] / "index.csv")
    pid = index.loc[index["split"] == "train", "patient_id"].iloc[0]
    rows = index.index[index["patient_id"] == pid]
    index.loc[rows[: len(rows) // 2], "split"] = "val"  # half of one patient's slices moved to validation
    leaky = tmp_path / "leaky"
    leaky.mkdir()
    index.to_csv(leaky / "index.csv", index=False)
    with pytest.raises(SplitLeakageError, match=pid):
        train_detector(leaky, tmp_path / "run", trained["config"], ARCHITECTURE)


def test_gradcam_peak_is_where_the_raw_map_is_highest() -> None:
    """MONAI's default post-processing inverts the map (max -> 0); the overlays must not."""
    from monai.visualize import GradCAM

    from osteomet.ct.detection.models import GRADCAM_LAYERS

    torch.manual_seed(1)
    model = build_classifier("resnet34", in_channels=3, width=0.25).eval()
    image = np.random.default_rng(1).random((3, 64, 64)).astype(np.float32)
    raw = GradCAM(nn_module=model, target_layers=GRADCAM_LAYERS["resnet34"], postprocessing=lambda x: x)(
        x=torch.from_numpy(image)[None], class_idx=0)[0, 0].detach().numpy()
    heat = gradcam_map(model, "resnet34", image, torch.device("cpu"))
    if raw.max() > 0:
        np.testing.assert_allclose(heat, raw / raw.max(), rtol=1e-5, atol=1e-6)
        assert np.unravel_index(heat.argmax(), heat.shape) == np.unravel_index(raw.argmax(), raw.shape)
    else:
        assert not heat.any()


def test_gradcam_overlay_puts_the_slice_and_the_plain_tile_beside_the_map(tmp_path: Path) -> None:
    """The map hides the bone under it: the plain tile and the whole slice (tile marked) are shown beside it."""
    from PIL import Image

    from osteomet.ct.detection.gradcam import save_overlay

    tile, heat, lesion = np.full((32, 32), 0.4), np.zeros((32, 32)), np.zeros((32, 32), bool)
    heat[4:12, 20:28] = 1.0  # the map's peak: upper right of the tile
    lesion[14:18, 14:18] = True
    path = save_overlay(tile, heat, lesion, tmp_path / "overlay.png", "resnet34 true positive",
                        context=np.full((60, 90), 0.2), box=(30, 45, 20), spacing=(1.0, 1.0))
    image = np.asarray(Image.open(path).convert("RGB")).astype(int)
    height, width = image.shape[:2]
    assert width > 2.5 * height  # three panels side by side
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    heat_coloured = (r - b > 40) & (r - g > 40) & (r < 200)  # jet red over grey (not the yellow box or lime outline)
    box_yellow = (r > 200) & (g > 170) & (b < 80)
    third = width // 3
    assert heat_coloured[:, :2 * third].sum() == 0  # the slice and the plain tile carry no map
    assert heat_coloured[:, 2 * third:].sum() > 20
    rows, cols = np.nonzero(heat_coloured[:, 2 * third:])
    tile_rows = np.nonzero((np.abs(image[:, 2 * third:] - 102).max(axis=-1) < 60).any(axis=1))[0]
    assert cols.mean() > (width - 2 * third) / 2 and rows.mean() < tile_rows.mean()  # where the peak is
    assert box_yellow[:, :third].sum() > 20 and box_yellow[:, third:].sum() == 0  # the tile, marked on the slice
