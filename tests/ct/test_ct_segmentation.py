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
from osteomet.ct.segmentation.train import epoch_slices, train_segmenter, untrained_val_dice
from osteomet.ct.slice_run import prepare_slice_run
from osteomet.data.io import Geometry, read_image
from osteomet.data.manifest import read_manifest
from osteomet.data.synth.ct import CTSynthConfig, generate_ct_cohort

ARCHITECTURE = "unet"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, easy_lesions: CTSynthConfig) -> dict:
    """A tiny 2D UNet trained once on a 10-patient synthetic cohort."""
    base = tmp_path_factory.mktemp("ct_segmentation")
    manifest_path = generate_ct_cohort(base / "cohort", 10, seed=11, config=easy_lesions)
    config = load_segmentation_config("tiny").model_copy(update={"max_epochs": 10, "patience": 10})
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
        out = model(torch.rand(2, 1, 64, 64))
    assert out.shape == (2, 2, 64, 64)
    # output bias starts at the foreground prior, so the untrained net predicts lesion rarely
    assert torch.softmax(out, 1)[:, 1].mean().item() < 0.1
    residual = any("residual" in name for name, _ in model.named_modules())
    assert residual == (architecture == "resunet")


def test_epoch_draws_every_lesion_slice_and_a_share_of_negatives() -> None:
    train = pd.DataFrame({"patient_id": ["A"] * 30, "slice": range(30), "label": [1] * 6 + [0] * 24})
    config = load_segmentation_config("tiny").model_copy(update={"negative_ratio": 0.5})
    drawn = epoch_slices(train, config, epoch=0)
    assert (drawn["label"] == 1).sum() == 6 and (drawn["label"] == 0).sum() == 3
    again = epoch_slices(train, config, epoch=0)
    assert drawn.equals(again)  # seeded by (seed, epoch)


def test_tiny_unet_learns(trained: dict) -> None:
    result = trained["result"]
    history = pd.read_csv(trained["run"] / ARCHITECTURE / "history.csv")
    assert result.best_dice >= trained["baseline"] + 0.25, (result.best_dice, trained["baseline"])
    assert result.best_epoch == int(history["val_dice"].to_numpy().argmax())


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
