"""UNETR: aligned augmentation, learning on CPU, exact resume, safe checkpoints, prediction."""


import numpy as np
import pytest
import SimpleITK as sitk
import torch

from osteomet.data.geometry import Geometry
from osteomet.data.images import read_image
from osteomet.data.manifest import read_manifest
from osteomet.data.synth.mri import MRISynthConfig, generate_mri_cohort
from osteomet.mri.preprocess import PreprocessConfig, preprocess_cohort
from osteomet.mri.segmentation.config import load_segmentation_config
from osteomet.mri.segmentation.data import PatchDataset, augmentations
from osteomet.mri.segmentation.infer import predict_cohort
from osteomet.mri.segmentation.model import build_unetr
from osteomet.mri.segmentation.train import train_unetr, validation_dice
from osteomet.utils.torch import pick_device

CONFIG = load_segmentation_config("tiny")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """16 synthetic patients preprocessed on the tiny grid; 10 train / 6 validation."""
    root = tmp_path_factory.mktemp("seg")
    manifest = read_manifest(generate_mri_cohort(root / "cohort", 16, seed=21,
                                                 config=MRISynthConfig(external_fraction=0.0)))
    preprocess_cohort(manifest, root / "pre", PreprocessConfig(seg_size=CONFIG.seg_size))
    ids = manifest.patient_ids
    return root, manifest, ids[:10], ids[10:]


def test_augmentation_keeps_image_and_mask_aligned():
    rng = np.random.default_rng(0)
    label = np.zeros((1, 16, 64, 64), np.float32)
    label[0, 4:12, 10:30, 35:50] = 1  # off-centre and not symmetric, so rotations show
    label[0, 6:9, 40:55, 5:12] = 1
    image = np.concatenate([label * 10.0, rng.normal(size=(2, 16, 64, 64)).astype(np.float32)])
    transform = augmentations(CONFIG.model_copy(update={"rotate90_prob": 1.0, "intensity_prob": 1.0}))
    rotated = 0
    for seed in range(12):
        transform.set_random_state(seed=seed)
        for sample in transform({"image": torch.from_numpy(image), "label": torch.from_numpy(label)}):
            img, lab = np.asarray(sample["image"]), np.asarray(sample["label"])
            assert img.shape == (3, 16, 32, 32) and lab.shape == (1, 16, 32, 32)
            np.testing.assert_array_equal(img[0] > 5.0, lab[0] > 0.5)  # same voxels after any rotation
            rotated += 1
    assert rotated == 24


def test_patches_depend_only_on_seed_epoch_and_case(prepared):
    root, _, train_ids, _ = prepared
    a = PatchDataset(root / "pre", train_ids, CONFIG)
    b = PatchDataset(root / "pre", train_ids, CONFIG)
    a.set_epoch(3)
    b.set_epoch(3)
    torch.testing.assert_close(a[2][0]["image"], b[2][0]["image"])
    b.set_epoch(4)
    assert not torch.equal(a[2][0]["image"], b[2][0]["image"])


def test_tiny_unetr_learns_on_cpu(prepared):
    root, _, train_ids, val_ids = prepared
    device = pick_device("cpu")
    torch.manual_seed(CONFIG.seed)
    untrained = validation_dice(build_unetr(CONFIG), root / "pre", val_ids, CONFIG, device)
    result = train_unetr(root / "pre", root / "run_learn", CONFIG.model_copy(update={"max_epochs": 6}),
                         train_ids=train_ids, val_ids=val_ids, device="cpu")
    assert result.best_score > untrained + 0.25 and result.best_score > 0.3
    assert (root / "run_learn" / "checkpoints" / "best.pt").exists()
    state = torch.load(root / "run_learn" / "checkpoints" / "last.pt", weights_only=True)  # tensors and values only
    assert state["epoch"] == 5 and len(state["history"]) == 6


def test_interrupted_training_resumes_to_the_same_end(prepared):
    root, _, train_ids, val_ids = prepared
    config = CONFIG.model_copy(update={"max_epochs": 3})
    straight = train_unetr(root / "pre", root / "run_straight", config, train_ids=train_ids, val_ids=val_ids,
                           device="cpu")

    def ctrl_c(epoch, row):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_unetr(root / "pre", root / "run_resumed", config, train_ids=train_ids, val_ids=val_ids, device="cpu",
                    on_epoch_end=ctrl_c)
    with pytest.raises(FileExistsError, match="pass --resume"):
        train_unetr(root / "pre", root / "run_resumed", config, train_ids=train_ids, val_ids=val_ids, device="cpu")
    resumed = train_unetr(root / "pre", root / "run_resumed", config, train_ids=train_ids, val_ids=val_ids,
                          device="cpu", resume=True)
    assert resumed.epochs_run == straight.epochs_run == 3
    np.testing.assert_allclose(resumed.history["val_dice"], straight.history["val_dice"], atol=1e-6)
    a = torch.load(root / "run_straight" / "checkpoints" / "last.pt", weights_only=True)["model"]
    b = torch.load(root / "run_resumed" / "checkpoints" / "last.pt", weights_only=True)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)


def test_training_errors_are_clear(prepared, tmp_path):
    root, _, train_ids, _ = prepared
    with pytest.raises(ValueError, match="need training and validation patients"):
        train_unetr(root / "pre", tmp_path / "r", CONFIG, train_ids=train_ids, val_ids=[])
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train_unetr(root / "pre", tmp_path / "r2", CONFIG, train_ids=train_ids, val_ids=train_ids[:1], resume=True)


def test_predictions_are_written_in_the_original_t2_geometry(prepared):
    root, manifest, _, _ = prepared
    run = root / "run_learn"
    if not (run / "checkpoints" / "best.pt").exists():
        train_unetr(root / "pre", run, CONFIG.model_copy(update={"max_epochs": 2}), train_ids=manifest.patient_ids[:10],
                    val_ids=manifest.patient_ids[10:], device="cpu")
    from osteomet.data.manifest import Manifest

    subset = Manifest(kind="mri", records=manifest.records[10:13])
    table = predict_cohort(root / "pre", run, root / "segdir", CONFIG, subset, device="cpu")
    assert list(table["patient_id"]) == subset.patient_ids
    assert {"dice", "precision", "recall"} <= set(table.columns)
    for record in subset:
        predicted = read_image(root / "segdir" / "auto" / f"{record.patient_id}.nii.gz")
        assert Geometry.of(predicted).differences(Geometry.of(read_image(record.t2))) == []
        values = set(np.unique(sitk.GetArrayViewFromImage(predicted)).tolist())
        assert values <= {0, 1}


def test_summary_per_split_keeps_its_columns_and_leaves_out_undefined_metrics():
    """summarise is osteomet.evaluation.segmentation.summarise_overlap per split (the CT comparison's summary),
    with the MRI table's columns: splits in name order, missing split 'all', metrics defined for no case left out."""
    import pandas as pd

    from osteomet.evaluation.bootstrap import bootstrap_mean
    from osteomet.mri.segmentation.infer import summarise

    table = pd.DataFrame({"patient_id": list("abcde"), "split": ["val", "test", "val", None, "test"],
                          "dice": [0.8, 0.6, 0.9, 0.5, 0.4], "precision": [0.9, np.nan, 1.0, 0.7, np.nan],
                          "recall": [0.7, 0.6, 0.8, 0.4, 0.5]})
    summary = summarise(table, n_boot=200, seed=1)
    assert list(summary.columns) == ["split", "metric", "n", "mean", "ci_low", "ci_high"]
    assert summary[["split", "metric"]].values.tolist() == [
        ["all", "dice"], ["all", "precision"], ["all", "recall"], ["test", "dice"], ["test", "recall"],
        ["val", "dice"], ["val", "precision"], ["val", "recall"]]
    row = summary.iloc[3]
    ci = bootstrap_mean([0.6, 0.4], 200, 1)
    assert row["n"] == 2 and (row["mean"], row["ci_low"], row["ci_high"]) == pytest.approx((0.5, ci.low, ci.high))
