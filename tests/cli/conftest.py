"""Fixtures of the CT command tests: the CT fixtures (one torch thread, learnable lesions) and one cohort."""

from __future__ import annotations

from pathlib import Path

import pytest

from osteomet.data.synth.ct import CTSynthConfig, generate_ct_cohort
from tests.ct.fixtures import easy_lesions, one_torch_thread  # noqa: F401  (fixtures used by these tests)


@pytest.fixture(scope="session")
def ct_cohort(tmp_path_factory: pytest.TempPathFactory, easy_lesions: CTSynthConfig) -> Path:  # noqa: F811
    """Eight CTs the detection and segmentation commands train on."""
    return generate_ct_cohort(tmp_path_factory.mktemp("ct_cli") / "cohort", 8, seed=4, config=easy_lesions)
