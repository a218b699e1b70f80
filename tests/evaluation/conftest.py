"""Fixtures of the characteristics-table and odds-ratio tests: one synthetic cohort and its table."""

from __future__ import annotations

import pandas as pd
import pytest

from osteomet.evaluation import characteristics_table
from tests.evaluation.characteristics import CATEGORICAL, CONTINUOUS, synthetic_frame


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """The synthetic cohort of :func:`~tests.evaluation.characteristics.synthetic_frame` (seed 0, 200 patients)."""
    return synthetic_frame()


@pytest.fixture(scope="module")
def table(frame: pd.DataFrame) -> pd.DataFrame:
    """Its characteristics table, continuous and categorical variables as the tests name them."""
    return characteristics_table(frame, continuous=CONTINUOUS, categorical=CATEGORICAL)
