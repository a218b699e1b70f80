"""Deep features: the input of the last layer, one row per patient, exactly repeatable; PCA fitted on train only."""

import numpy as np
import torch

from osteomet.data.manifest import read_manifest
from osteomet.mri.classifier.data import RoiDataset, roi_patients, split_ids
from osteomet.mri.classifier.features import deep_features
from osteomet.mri.classifier.labels import LabelGuard
from osteomet.mri.classifier.predict import load_model
from osteomet.mri.classifier.train import RunSpec, train_run

from .conftest import GRID


def test_features_are_the_last_layer_input(trained_grid, roi_cohort):
    out, _, _, _ = trained_grid
    manifest_path, pre = roi_cohort
    patients = roi_patients(pre, read_manifest(manifest_path))
    table, meta = deep_features(out, pre, patients, device="cpu")
    network, _, config, _ = load_model(out, "cpu")
    ids = patients.loc[patients["has_roi"], "patient_id"].tolist()
    assert table["patient_id"].tolist() == ids and len(ids) == 20
    assert table.shape[1] - 1 == network.fc.in_features == meta["n_activations"]
    images = torch.stack([RoiDataset(pre, ids, None, config, augment=False)[i][0] for i in range(len(ids))])
    with torch.no_grad():
        logits = network(images).reshape(-1)
        refit = network.fc(torch.tensor(table.drop(columns="patient_id").to_numpy(), dtype=torch.float32))
    torch.testing.assert_close(refit.reshape(-1), logits, rtol=1e-4, atol=1e-4)


def test_same_seed_same_features(trained_grid, roi_cohort, tmp_path):
    """Retraining one grid configuration with the same seed (and thread count) reproduces its features exactly;
    another seed does not."""
    out, table, _, _ = trained_grid
    manifest_path, pre = roi_cohort
    manifest = read_manifest(manifest_path)
    patients = roi_patients(pre, manifest)
    guard = LabelGuard.from_manifest(manifest)
    labels = {"train_labels": guard.labels("train", "fit", split_ids(patients, "train")).to_dict(),
              "val_labels": guard.labels("val", "select", split_ids(patients, "val")).to_dict()}
    row = table.iloc[0]
    spec = RunSpec(int(row["depth"]), row["optimizer"], float(row["learning_rate"]))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the grid trains on one thread; float sums depend on the thread count
    try:
        train_run(pre, tmp_path / "again", GRID, spec, **labels, device="cpu")
        train_run(pre, tmp_path / "seed1", GRID.model_copy(update={"seed": 1}), spec, **labels, device="cpu")
    finally:
        torch.set_num_threads(threads)
    original = deep_features(out / "configs" / spec.name, pre, patients, device="cpu")[0]
    again = deep_features(tmp_path / "again", pre, patients, device="cpu")[0]
    other = deep_features(tmp_path / "seed1", pre, patients, device="cpu")[0]
    np.testing.assert_array_equal(again.drop(columns="patient_id"), original.drop(columns="patient_id"))
    assert not np.allclose(other.drop(columns="patient_id"), original.drop(columns="patient_id"))


def test_pca_is_fitted_on_training_patients_only(trained_grid, roi_cohort):
    """Components match an SVD of the centred training rows (numpy), up to sign."""
    out, _, _, _ = trained_grid
    manifest_path, pre = roi_cohort
    patients = roi_patients(pre, read_manifest(manifest_path))
    raw = deep_features(out, pre, patients, device="cpu")[0]
    reduced, meta = deep_features(out, pre, patients, pca_components=3, device="cpu")
    assert list(reduced.columns) == ["patient_id", "deep_pc000", "deep_pc001", "deep_pc002"]
    values = raw.drop(columns="patient_id").to_numpy()
    train = (patients.set_index("patient_id").loc[raw["patient_id"], "split"] == "train").to_numpy()
    centre = values[train].mean(axis=0)
    _, _, vt = np.linalg.svd(values[train] - centre, full_matrices=False)
    expected = (values - centre) @ vt[:3].T
    got = reduced.drop(columns="patient_id").to_numpy()
    np.testing.assert_allclose(np.abs(got), np.abs(expected), rtol=1e-6, atol=1e-6)
    assert meta["pca"]["n_fit"] == int(train.sum()) < len(values)
