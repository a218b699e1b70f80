"""One bpMRI study for the whole session: the modules that test `run mri`, its stages and `predict mri` on the same
small two-centre cohort share it (a module needing other settings copies it and reruns: only the changed stages run)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from tests.pipeline.studies import study_file


@pytest.fixture(scope="session")
def unsplit_cohort(tmp_path_factory) -> Path:
    """36 synthetic patients, 30% at the external centre, without a split column (the study draws its own)."""
    from osteomet.data.synth.mri import MRISynthConfig, generate_mri_cohort

    out = tmp_path_factory.mktemp("study_cohort")
    manifest = generate_mri_cohort(out, 36, seed=5, config=MRISynthConfig(external_fraction=0.3))
    pd.read_csv(manifest).drop(columns=["split"]).to_csv(out / "unsplit.csv", index=False)
    return out / "unsplit.csv"


@pytest.fixture(scope="session")
def shared_study(unsplit_cohort: Path, tmp_path_factory) -> tuple[Path, dict]:
    """The tiny study of :func:`tests.pipeline.studies.study_file` on :func:`unsplit_cohort`: (run folder, run.json)."""
    from osteomet.pipeline.run_mri import run_mri
    from osteomet.pipeline.study import load_study_config

    run = tmp_path_factory.mktemp("study") / "run"
    config = load_study_config(study_file(run.parent / "config"))
    return run, run_mri(unsplit_cohort, run, config, log=lambda _line: None)


def copied_study(study: tuple[Path, dict], to: Path) -> Path:
    """A copy of the shared study's run folder (new modification times; fingerprints by contents keep it current)."""
    shutil.copytree(study[0], to, copy_function=shutil.copy)
    return to
