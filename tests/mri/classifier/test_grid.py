"""The 2x2x2 grid: what it writes, selection on validation only (checked against sklearn), resume after a kill."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from osteomet.data.manifest import read_manifest
from osteomet.errors import InputError, OutputExistsError
from osteomet.mri.classifier.data import RoiDataset, roi_patients, split_ids
from osteomet.mri.classifier.grid import run_grid
from osteomet.mri.classifier.labels import LabelGuard
from osteomet.mri.classifier.predict import load_model
from osteomet.mri.classifier.train import predict_probabilities

from .conftest import GRID

REPO = Path(__file__).resolve().parents[3]


def test_grid_writes_every_configuration(trained_grid):
    out, table, winner, _ = trained_grid
    assert len(table) == 8 and set(table["depth"]) == {10, 18} and set(table["optimizer"]) == {"adam", "sgd"}
    assert set(table["learning_rate"]) == {1e-2, 1e-3}
    assert pd.read_csv(out / "grid.csv")["name"].tolist() == table["name"].tolist()
    assert (out / "heatmap.png").stat().st_size > 1000 and (out / "patients.csv").exists()
    for name in table["name"]:
        run = out / "configs" / name
        history = pd.read_csv(run / "history.csv")
        assert history["epoch"].tolist() == [0, 1]
        state = torch.load(run / "checkpoints" / "best.pt", weights_only=True)  # tensors only
        assert set(state) == {"model", "epoch", "val_auc"}
    assert json.loads((out / "winner.json").read_text(encoding="utf-8"))["name"] == winner["name"]


def test_selection_reads_validation_labels_only(trained_grid, roi_cohort):
    """Validation AUCs recomputed from the saved checkpoints with sklearn; the winner is the argmax of the smoothed
    validation AUC each run recorded for its kept epoch."""
    out, table, winner, guard = trained_grid
    manifest_path, pre = roi_cohort
    manifest = read_manifest(manifest_path)
    frame = manifest.to_frame().set_index("patient_id")
    val = split_ids(roi_patients(pre, manifest), "val")
    aucs = {}
    for name in table["name"]:
        network, _, config, device = load_model(out / "configs" / name, "cpu")
        probs = predict_probabilities(network, RoiDataset(pre, val, None, config, augment=False), device, 4)
        aucs[name] = roc_auc_score(frame.loc[val, "label"].astype(int), probs)
    np.testing.assert_allclose(table.set_index("name")["val_auc"].loc[list(aucs)], list(aucs.values()), atol=1e-12)
    # the grid ranks by the smoothed validation AUC (selection_smoothing), each run's own history at its kept epoch
    scores = {}
    for name, best_epoch in zip(table["name"], table["best_epoch"]):
        history = pd.read_csv(out / "configs" / name / "history.csv").set_index("epoch")
        scores[name] = float(history.loc[best_epoch, "val_auc_smoothed"])
    np.testing.assert_allclose(table.set_index("name")["val_score"].loc[list(scores)], list(scores.values()))
    assert winner["name"] == max(scores, key=lambda n: (scores[n], -list(scores).index(n)))
    assert guard.reads == [("train", "fit"), ("val", "select")]  # nothing else was asked of the guard


def test_grid_refuses_to_read_held_out_labels_through_its_guard(roi_cohort, tmp_path):
    """A 'guard' that hands the test split out as validation trips the leakage check on patient ids."""
    manifest_path, pre = roi_cohort
    manifest = read_manifest(manifest_path)
    frame = manifest.to_frame()
    frame["split"] = frame["split"].replace({"val": "test", "test": "val"})  # labels of val patients now 'test'
    with pytest.raises(Exception) as caught:
        run_grid(pre, tmp_path / "g", GRID, LabelGuard(frame), roi_patients(pre, manifest))
    assert "not in the val split" in str(caught.value)


def test_existing_grid_is_not_overwritten_and_settings_must_match(trained_grid, roi_cohort):
    out, _, _, _ = trained_grid
    manifest_path, pre = roi_cohort
    manifest = read_manifest(manifest_path)
    with pytest.raises(OutputExistsError, match="--resume"):
        run_grid(pre, out, GRID, LabelGuard.from_manifest(manifest), roi_patients(pre, manifest))
    with pytest.raises(InputError, match="other settings"):
        run_grid(pre, out, GRID.model_copy(update={"seed": 1}), LabelGuard.from_manifest(manifest),
                 roi_patients(pre, manifest), resume=True)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "osteomet", "deep", *args]


def test_killed_grid_resumes_without_rerunning_finished_configurations(trained_grid, roi_cohort, tmp_path):
    """Kill the CLI while the second configuration is half-trained; --resume ends where an uninterrupted grid does."""
    reference, table, _, _ = trained_grid
    manifest, pre = roi_cohort
    small = GRID.model_copy(update={"depths": [10], "optimizers": ["adam"]})  # the reference grid's first two
    (tmp_path / "grid.yaml").write_text(json.dumps(small.model_dump(mode="json")))  # JSON is YAML
    out = tmp_path / "grid"
    args = ["grid", "-p", str(pre), "-m", str(manifest), "-o", str(out), "--config", str(tmp_path / "grid.yaml"),
            "--jobs", "1"]  # one configuration at a time: the second starts after the first finished
    first, second = (out / "configs" / name for name in table["name"][:2])
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    process = subprocess.Popen(_cli(*args), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not ((second / "history.csv").exists() and not (second / "result.json").exists()):
        assert process.poll() is None and time.time() < deadline, "grid ended before it could be interrupted"
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert (first / "result.json").exists() and not (second / "result.json").exists()
    finished_at = (first / "result.json").stat().st_mtime_ns
    half = pd.read_csv(second / "history.csv")
    assert len(half) == 1

    done = subprocess.run(_cli(*args, "--resume"), env=env, capture_output=True, text=True, encoding="utf-8",
                          errors="replace", check=False)
    assert done.returncode == 0, done.stderr
    assert (first / "result.json").stat().st_mtime_ns == finished_at  # not trained again
    resumed = pd.read_csv(second / "history.csv")
    pd.testing.assert_frame_equal(resumed.iloc[:1], half)  # the first epoch was kept, not redone
    expected = pd.read_csv(reference / "grid.csv").iloc[:2].drop(columns="seconds")
    pd.testing.assert_frame_equal(pd.read_csv(out / "grid.csv").drop(columns="seconds"), expected)


def test_two_worker_processes_give_the_same_grid(trained_grid, roi_cohort, tmp_path):
    """--jobs 2 (a LocalCluster of single-threaded workers) trains the same configurations to the same AUCs."""
    _, table, _, _ = trained_grid
    manifest_path, pre = roi_cohort
    manifest = read_manifest(manifest_path)
    small = GRID.model_copy(update={"depths": [10]})
    parallel, _ = run_grid(pre, tmp_path / "g", small, LabelGuard.from_manifest(manifest),
                           roi_patients(pre, manifest), jobs=2)
    expected = table[table["depth"] == 10].reset_index(drop=True)
    np.testing.assert_allclose(parallel["val_auc"], expected["val_auc"], atol=1e-9)
    assert parallel["best_epoch"].tolist() == expected["best_epoch"].tolist()


def test_an_existing_dask_cluster_trains_the_same_configuration(trained_grid, roi_cohort, tmp_path):
    """--scheduler tcp://... sends the same task to a cluster started elsewhere (here: a LocalCluster)."""
    from dask.distributed import LocalCluster

    _, table, _, _ = trained_grid
    manifest_path, pre = roi_cohort
    manifest = read_manifest(manifest_path)
    one = GRID.model_copy(update={"depths": [10], "optimizers": ["adam"], "learning_rates": [1e-2]})
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster:
        result, winner = run_grid(pre, tmp_path / "g", one, LabelGuard.from_manifest(manifest),
                                  roi_patients(pre, manifest), scheduler=cluster.scheduler_address)
    expected = table.set_index("name").loc[winner["name"]]
    assert result["val_auc"].iloc[0] == pytest.approx(expected["val_auc"], abs=1e-9)
    assert (tmp_path / "g" / "configs" / winner["name"] / "checkpoints" / "best.pt").exists()
