"""The fusion model: stacks clinical, radiomics and deep information, fitted on training patients only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from osteomet.evaluation import auc, delong_test
from osteomet.models.clinical import train_clinical
from osteomet.models.fusion import FusionModel, fusion_inputs, train_fusion
from osteomet.models.predictions import prediction_table


def _study(n: int = 500, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.35).astype(int)
    ids = [f"P{i:04d}" for i in range(n)]
    split = rng.choice(["train", "val", "test"], size=n, p=[0.6, 0.1, 0.3])
    manifest = pd.DataFrame({"patient_id": ids, "split": split, "label": y,
                             "age": 68 + 3 * y + rng.normal(0, 7, n), "psa": np.exp(2 + 0.5 * y + rng.normal(0, 1, n)),
                             "gleason": np.clip(np.round(7 + 0.6 * y + rng.normal(0, 1, n)), 6, 10)})
    manifest.loc[rng.random(n) < 0.1, "psa"] = np.nan
    radiomics = pd.DataFrame(rng.normal(size=(n, 40)), columns=[f"t2_original_glcm_F{i}" for i in range(40)])
    radiomics["adc_original_firstorder_Mean"] = -1.0 * y + rng.normal(0, 1, n)
    radiomics.insert(0, "patient_id", ids)
    deep = pd.DataFrame(rng.normal(size=(n, 8)), columns=[f"f{i}" for i in range(8)])
    deep["f0"] += 1.1 * y
    deep.insert(0, "patient_id", ids)
    return manifest, radiomics, deep


def test_feature_fusion_beats_the_clinical_model_on_test(tmp_path: Path) -> None:
    manifest, radiomics, deep = _study()
    _, clinical = train_clinical(manifest, tmp_path / "clinical")
    inputs = fusion_inputs(manifest, radiomics=radiomics, deep=deep)
    model, fused = train_fusion(inputs, manifest, tmp_path / "fusion")
    assert "adc_original_firstorder_Mean" in "".join(model.columns) and "deep:f0" in model.columns
    test_c, test_f = clinical[clinical["split"] == "test"], fused[fused["split"] == "test"]
    result = delong_test(test_f["label"], test_f["prob"], test_c["prob"])
    assert result.auc1 > result.auc2 and result.p < 0.05
    loaded = FusionModel.load(tmp_path / "fusion" / "model")
    np.testing.assert_allclose(loaded.predict_proba(inputs)[:, 1], model.predict_proba(inputs)[:, 1], rtol=1e-6)
    train = fused["split"] == "train"
    assert auc(fused.loc[train, "label"], model.predict_proba(inputs)[train.to_numpy(), 1]) > \
        auc(fused.loc[train, "label"], fused.loc[train, "prob"])  # training predictions are out-of-fold


def test_probability_stacking_uses_only_the_base_models_outputs(tmp_path: Path) -> None:
    manifest, radiomics, deep = _study(seed=1)
    rng = np.random.default_rng(3)
    y = manifest["label"].to_numpy()
    bases = {name: prediction_table(manifest["patient_id"], manifest["split"], y,
                                    1 / (1 + np.exp(-(strength * (y - 0.5) + rng.normal(0, 1, len(y))))), name)
             for name, strength in (("clinical", 0.6), ("radiomics", 1.8), ("deep", 1.8))}
    inputs = fusion_inputs(manifest, predictions=bases)
    model, fused = train_fusion(inputs, manifest, tmp_path, model=FusionModel(mode="probabilities"))
    assert model.columns == ["prob:clinical", "prob:radiomics", "prob:deep"]
    test = fused["split"] == "test"
    assert auc(fused.loc[test, "label"], fused.loc[test, "prob"]) > \
        auc(bases["clinical"].loc[test.to_numpy(), "label"], bases["clinical"].loc[test.to_numpy(), "prob"])
    with pytest.raises(ValueError, match="needs base-model predictions"):
        FusionModel(mode="probabilities").fit(fusion_inputs(manifest), y)


def test_held_out_labels_never_reach_the_fit(tmp_path: Path) -> None:
    manifest, radiomics, deep = _study(300, seed=2)
    inputs = fusion_inputs(manifest, radiomics=radiomics, deep=deep)
    _, first = train_fusion(inputs, manifest, tmp_path / "a")
    flipped = manifest.copy()
    held_out = flipped["split"] != "train"
    flipped.loc[held_out, "label"] = 1 - flipped.loc[held_out, "label"]
    _, second = train_fusion(inputs, flipped, tmp_path / "b")
    np.testing.assert_array_equal(first["prob"].to_numpy(), second["prob"].to_numpy())
