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
