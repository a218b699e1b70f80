"""Shared fixtures: the real data beside the repository and small synthetic cohorts."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def shared_path(*parts: str) -> Path:
    """Path under ../shared/data; fails (not skips) with a clear message when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.fail(
            f"real test data not found: {path}. These tests need the shared data folder next to the "
            f"repository (../shared/data relative to {REPO_ROOT}); see its README.md.",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def prostatex() -> Path:
    return shared_path("mri", "prostatex")


@pytest.fixture(scope="session")
def mri_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An 8-patient synthetic bpMRI cohort (both centres), generated once per session."""
    from osteomet.data.synth.mri import MRISynthConfig, generate_mri_cohort

    out = tmp_path_factory.mktemp("mri_cohort")
    return generate_mri_cohort(out, 8, seed=3, config=MRISynthConfig(external_fraction=0.25))


# --- running on several workers (pytest-xdist, ``-n auto`` in pyproject.toml) -------------------------------------

#: Modules that share a session-scoped fixture run on one worker (else each worker would build it).
SHARED_GROUPS = {
    "tests/pipeline/test_run_mri.py": "bpmri_study", "tests/pipeline/test_trust.py": "bpmri_study",
    "tests/report/": "report_study", "tests/cli/": "cli_ct_cohort", "tests/mri/classifier/": "deep_grid",
}
#: The longest groups start first, so the last one to finish is a short one (about 2.5 minutes for the bpMRI
#: study group down to half a minute; measured with ``--durations``). Groups not listed follow in file order.
LONGEST_FIRST = [
    "bpmri_study", "tests/pipeline/test_study_learns.py", "tests/pipeline/test_applicability.py",
    "tests/pipeline/test_run_ct.py", "tests/pipeline/test_demo.py", "tests/pipeline/test_run_ct_nnunet.py",
    "report_study", "tests/ct/detection/test_detection.py", "cli_ct_cohort", "tests/pipeline/test_rigour.py",
    "deep_grid", "tests/pipeline/test_dask_cluster.py", "tests/data/synth/ct/test_synth_ct.py",
    "tests/mri/segmentation/test_unetr.py", "tests/ct/nnunet/test_nnunet.py",
]


def _group(nodeid: str) -> str:
    module = nodeid.split("::")[0]
    for prefix, group in SHARED_GROUPS.items():
        if module.startswith(prefix):
            return group
    return module


def pytest_configure(config: pytest.Config) -> None:
    """On a pytest-xdist worker: pinned to its share of the cores (``gw<i>`` gets every ``workers``-th core from the
    i-th), so osteomet's defaults (every core it may use: :func:`osteomet.utils.cores.available_cores`) and torch's
    threads see the worker's share, and two workers do not run four busy threads on two cores. The tests'
    subprocesses inherit the pinning."""
    import os

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if workers > 1 and worker.startswith("gw") and hasattr(os, "sched_setaffinity"):
        index = int(worker[2:])
        cores = sorted(os.sched_getaffinity(0))
        share = cores[index::workers] or [cores[index % len(cores)]]
        os.sched_setaffinity(0, share)
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[name] = str(len(share))


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist (with -n0 or without the plugin, unused)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Whole groups to a worker (:data:`SHARED_GROUPS`, else a module), in collection order: pytest-xdist's own
    ``loadgroup`` cannot do it under pytest 9, whose node ids no longer take its ``@group`` suffix."""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _group(nodeid)

    return GroupScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The longest groups first (a worker takes the next group when it is free, so the last to finish is short)."""
    rank = {group: i for i, group in enumerate(LONGEST_FIRST)}
    order = {id(item): i for i, item in enumerate(items)}
    items.sort(key=lambda item: (rank.get(_group(item.nodeid), len(rank)), order[id(item)]))
