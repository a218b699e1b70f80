"""``--scheduler tcp://HOST:PORT``: a real ``dask scheduler`` and two ``dask worker`` processes on localhost run the
parallel stages, and the outputs equal those of the same study run in this process.

What goes to the cluster here: the CT segmenters' training (one task per architecture), the radiomics extraction of
the CT ICC stage (one task per patient) and the bpMRI deep stage's cross-fitted folds (one task per fold). The
workers' own task logs show they ran them; the tables and weights show nothing changed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from osteomet.cli.main import app

runner = CliRunner()
ARCHITECTURES = ("unet", "resunet")


def _dask_cli() -> str | None:
    """The ``dask`` command of this environment (its workers import this osteomet), else one on the PATH."""
    beside = Path(sys.executable).parent / "dask"
    return str(beside) if beside.is_file() else shutil.which("dask")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Any]:
    """A Client of a scheduler and two single-threaded workers, each its own ``dask`` process on 127.0.0.1."""
    dask = _dask_cli()
    if dask is None:
        pytest.skip("the dask command line (distributed) is not installed")
    from dask.distributed import Client

    from osteomet.utils.dask_tasks import WORKER_ENVIRON

    folder = tmp_path_factory.mktemp("dask")
    scheduler_file = folder / "scheduler.json"
    env = {**os.environ, **WORKER_ENVIRON}
    commands = [[dask, "scheduler", "--scheduler-file", str(scheduler_file), "--host", "127.0.0.1", "--port", "0",
                 "--no-dashboard"]]
    commands += [[dask, "worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1", "--no-nanny",
                  "--no-dashboard", "--host", "127.0.0.1", "--name", name, "--local-directory", str(folder / name)]
                 for name in ("worker-1", "worker-2")]
    processes: list[subprocess.Popen] = []
    logs = []
    client = None
    try:
        for i, command in enumerate(commands):
            logs.append(open(folder / f"process-{i}.log", "wb"))
            processes.append(subprocess.Popen(command, stdout=logs[-1], stderr=subprocess.STDOUT, env=env))
            if i == 0:  # the workers read the scheduler's address from its file
                _wait_for(scheduler_file, processes[0], folder)
        client = Client(scheduler_file=str(scheduler_file), timeout="60s")
        client.wait_for_workers(2, timeout=120)
        yield client
    finally:
        if client is not None:
            client.close()
        for process in reversed(processes):  # workers first, then the scheduler
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for log in logs:
            log.close()


def _wait_for(scheduler_file: Path, scheduler: subprocess.Popen, folder: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not scheduler_file.is_file():
        if scheduler.poll() is not None or time.monotonic() > deadline:
            log = (folder / "process-0.log").read_text(errors="replace")
            pytest.fail(f"dask scheduler did not start (exit {scheduler.poll()}):\n{log}")
        time.sleep(0.2)


def executed(client: Any) -> dict[str, set[str]]:
    """Per worker, the keys of the tasks it executed (its own transition log)."""
    return client.run(lambda dask_worker: {str(entry[0]) for entry in dask_worker.state.log
                                           if len(entry) > 2 and entry[2] == "executing"})


def _named(keys: set[str], function: str) -> set[str]:
    """Keys of ``client.map(function, ...)`` tasks (named ``<function>-<token>[-<index>]``)."""
    return {key for key in keys if key.startswith(f"{function}-")}


@pytest.fixture(scope="module")
def ct_manifest(tmp_path_factory) -> Path:
    from osteomet.data.synth.ct import CTSynthConfig, generate_ct_cohort

    return generate_ct_cohort(tmp_path_factory.mktemp("ct_cohort"), 6, seed=3,
                              config=CTSynthConfig(region="abdomen_pelvis", inplane_size=64))


def _ct_study(folder: Path) -> Path:
    """No detection; two very small segmenters (one short epoch each, windows without overlap); the ICC's radiomics."""
    from osteomet.ct.segmentation.config import CTSegmentationConfig, load_segmentation_config

    segmentation = load_segmentation_config("tiny").model_dump(mode="json")
    segmentation.update(architectures=list(ARCHITECTURES), channels=[4, 8], strides=[2], patches_per_epoch=32,
                        hard_negatives=0, max_epochs=1, validate_every=1, per_architecture={}, window_overlap=0.0)
    CTSegmentationConfig.model_validate(segmentation)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "segmentation.yaml").write_text(yaml.safe_dump(segmentation))
    study = {"split": {"ratios": [5, 2, 3]}, "detection": {"enabled": False},
             "segmentation": {"config": "segmentation.yaml"}, "lesions": {"enabled": False},
             "icc": {"params": "tiny"}}
    (folder / "ct_study.yaml").write_text(yaml.safe_dump(study))
    return folder / "ct_study.yaml"


def test_run_ct_with_scheduler_trains_and_extracts_on_the_workers_and_equals_the_local_run(cluster, ct_manifest,
                                                                                          tmp_path):
    import torch

    from osteomet.layout import RunLayout

    config = _ct_study(tmp_path / "config")
    command = ["run", "ct", "-m", str(ct_manifest), "--config", str(config)]
    local = runner.invoke(app, [*command, "-o", str(tmp_path / "local")])
    assert local.exit_code == 0, local.output
    before = executed(cluster)
    remote = runner.invoke(app, [*command, "-o", str(tmp_path / "cluster"), "--scheduler", cluster.scheduler.address])
    assert remote.exit_code == 0, remote.output
    ran = {worker: keys - before.get(worker, set()) for worker, keys in executed(cluster).items()}

    # the workers, not this process, trained each architecture and extracted the radiomics
    trained = [len(_named(keys, "train_architecture_task")) for keys in ran.values()]
    assert sorted(trained) == [1, 1], ran  # two architectures, one on each single-threaded worker
    extracted = set().union(*(_named(keys, "extract_task") for keys in ran.values()))
    assert len(extracted) >= 6, ran  # the manual masks' features at least, one task per patient

    a, b = RunLayout(tmp_path / "local"), RunLayout(tmp_path / "cluster")
    for architecture in ARCHITECTURES:
        model_a, model_b = (layout.ct_segmentation / "model" / architecture for layout in (a, b))
        pd.testing.assert_frame_equal(pd.read_csv(model_a / "history.csv").drop(columns="seconds"),
                                      pd.read_csv(model_b / "history.csv").drop(columns="seconds"))
        weights_a, weights_b = (torch.load(m / "checkpoints" / "last.pt", weights_only=True)["model"]
                                for m in (model_a, model_b))
        assert weights_a.keys() == weights_b.keys()
        assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a), architecture
        dice_a, dice_b = (_without_paths(pd.read_csv(layout.ct_segmentation / "predictions" / architecture /
                                                     "metrics.csv"), layout.root) for layout in (a, b))
        pd.testing.assert_frame_equal(dice_a, dice_b)
        features_a, features_b = (_without_paths(pd.read_parquet(layout.ct_icc_of(architecture) / "predicted" /
                                                                 "features.parquet"), layout.root) for layout in (a, b))
        pd.testing.assert_frame_equal(features_a, features_b)
    pd.testing.assert_frame_equal(*(_without_paths(pd.read_parquet(layout.ct_icc / "manual" / "features.parquet"),
                                                   layout.root) for layout in (a, b)))
    assert dice_a["dice"].notna().any()


def _without_paths(frame: pd.DataFrame, run: Path) -> pd.DataFrame:
    """The table with the run's folder named ``RUN`` in its text (the two runs are in different folders)."""
    text = frame.select_dtypes(include="object").columns
    return frame.assign(**{c: frame[c].str.replace(str(run), "RUN", regex=False) for c in text})


def test_cross_fitted_deep_folds_on_the_cluster_equal_the_folds_trained_here(cluster, tmp_path):
    from osteomet.data.manifest import read_manifest
    from osteomet.data.synth.mri import MRISynthConfig, generate_mri_cohort
    from osteomet.mri.classifier.config import load_classifier_config
    from osteomet.mri.classifier.data import roi_patients, split_ids
    from osteomet.mri.classifier.labels import LabelGuard
    from osteomet.mri.classifier.train import RunSpec, train_run
    from osteomet.mri.preprocess import PreprocessConfig, preprocess_cohort
    from osteomet.pipeline.deep import cross_fitted_training

    manifest = generate_mri_cohort(tmp_path / "cohort", 20, seed=5,
                                   config=MRISynthConfig(external_fraction=0.2, split_ratios=(0.45, 0.35, 0.2)))
    cohort = read_manifest(manifest)
    preprocess_cohort(cohort, tmp_path / "pre", PreprocessConfig(seg_size=(64, 64, 16), roi_size=(32, 32, 16),
                                                                 roi_spacing=(2.0, 2.0, 4.0)))
    config = load_classifier_config("tiny").model_copy(update={"max_epochs": 1, "batch_size": 4})
    guard, patients = LabelGuard.from_manifest(cohort), roi_patients(tmp_path / "pre", cohort)
    labels = {split: {k: int(v) for k, v in guard.labels(split, role, split_ids(patients, split)).items()}
              for split, role in (("train", "fit"), ("val", "select"))}
    run = tmp_path / "winner"  # the configuration the folds refit (a grid's winner in a study)
    train_run(tmp_path / "pre", run, config, RunSpec(config.depths[0], config.optimizers[0], config.learning_rates[0]),
              train_labels=labels["train"], val_labels=labels["val"], device="cpu")

    here = cross_fitted_training(run, tmp_path / "pre", patients, guard, tmp_path / "here", folds=2, device="cpu")
    before = executed(cluster)
    there = cross_fitted_training(run, tmp_path / "pre", patients, guard, tmp_path / "there", folds=2, device="cpu",
                                  scheduler=cluster.scheduler.address)
    ran = {worker: keys - before.get(worker, set()) for worker, keys in executed(cluster).items()}
    assert sum(len(_named(keys, "fold_task")) for keys in ran.values()) == 2, ran
    assert set(here) == set(labels["train"]) and len(set(here.values())) > 1
    assert there == here  # the same probabilities, bit for bit


def test_run_ct_refuses_a_scheduler_that_is_not_an_address_before_any_stage(tmp_path):
    """On the command line or in ct_study.yaml, as `run mri` does (the pattern is StudyConfig's)."""
    command = ["run", "ct", "-m", str(tmp_path / "manifest.csv"), "-o", str(tmp_path / "run")]
    result = runner.invoke(app, [*command, "--config", "tiny", "--scheduler", "tpc://10.0.0.5:8786"])
    assert result.exit_code == 2 and "--scheduler tpc://10.0.0.5:8786: not a Dask scheduler address" in result.output
    (tmp_path / "ct_study.yaml").write_text("scheduler: 'tcp://host :8786'\n")
    result = runner.invoke(app, [*command, "--config", str(tmp_path / "ct_study.yaml")])
    assert result.exit_code == 2 and "not a Dask scheduler address" in result.output, result.output
    jobs = runner.invoke(app, [*command, "--config", "tiny", "--scheduler", "tcp://10.0.0.5:8786", "--jobs", "0"])
    assert jobs.exit_code == 2 and "--jobs" in jobs.output  # typer's own range check
    assert not (tmp_path / "run").exists()
