"""Values as users read them in messages and summaries: ``n/a`` for missing, plain numbers.

An f-string's ``!r`` on a pandas cell shows ``np.float64(nan)`` or ``np.int64(2)`` (numpy 2's
repr); a user who typed ``2`` or left a cell blank should read ``2`` and ``n/a``.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np


def shown(value: Any) -> str:
    """``n/a`` for None/NaN/NaT, numbers as written (``2``, ``0.25``), strings quoted, anything else as ``str``."""
    if value is None:
        return "n/a"
    if np.ndim(value) == 0 and not isinstance(value, (str, bytes)):
        try:
            import pandas as pd

            if pd.isna(value):
                return "n/a"
        except (TypeError, ValueError):
            pass
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return f"{float(value):g}"
    if isinstance(value, str):
        return repr(value)
    return str(value)
