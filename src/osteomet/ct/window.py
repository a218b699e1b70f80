"""The bone window: HU -> [0, 1], the one intensity mapping of every CT slice model."""

from __future__ import annotations

import numpy as np


def bone_window(hu: np.ndarray, level: float = 400.0, width: float = 1800.0) -> np.ndarray:
    """HU -> [0, 1] through the window ``level +/- width/2`` (float32).

    The default (-500..1300 HU) keeps fat, soft tissue, trabecular bone and sclerotic lesions
    (300-1200 HU) apart, and saturates only dense cortex.
    """
    low = level - width / 2.0
    return np.clip((np.asarray(hu, np.float32) - np.float32(low)) / np.float32(width), 0.0, 1.0)
