"""Stacking per-patient tables, where a patient without lesions contributes an empty one."""

from __future__ import annotations

from typing import Sequence

import pandas as pd


def stack_rows(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The frames' rows in order; empty frames add nothing, and with no rows at all the first frame's columns remain.

    ``pd.concat`` is deprecating how an empty frame's columns take part in the result's dtypes; leaving
    them out keeps a lesion-free patient from turning integer columns into float or object.
    """
    kept = [f for f in frames if len(f)]
    if kept:
        return pd.concat(kept, ignore_index=True)
    return frames[0].iloc[0:0].reset_index(drop=True) if len(frames) else pd.DataFrame()
