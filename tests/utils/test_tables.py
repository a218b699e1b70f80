"""Stacking per-patient tables: a lesion-free patient's empty table changes neither rows nor dtypes."""

from __future__ import annotations

import warnings

import pandas as pd

from osteomet.utils.tables import stack_rows


def test_empty_tables_add_no_rows_and_keep_integer_columns_integer() -> None:
    schema = {"lesion": "int64", "bone": "object", "volume_ml": "float64"}
    empty = pd.DataFrame({c: pd.Series(dtype=t) for c, t in schema.items()})
    full = pd.DataFrame({"lesion": [1, 2], "bone": ["L4", "sacrum"], "volume_ml": [0.8, 2.5]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # pandas' FutureWarning on empty entries is what this avoids
        stacked = stack_rows([empty, full, empty, full])
    assert stacked["lesion"].tolist() == [1, 2, 1, 2] and stacked.index.tolist() == [0, 1, 2, 3]
    assert stacked.dtypes.astype(str).to_dict() == schema


def test_no_rows_at_all_keeps_the_columns() -> None:
    empty = pd.DataFrame({"lesion": pd.Series(dtype="int64")})
    assert list(stack_rows([empty, empty]).columns) == ["lesion"] and len(stack_rows([empty])) == 0
    assert stack_rows([]).empty
