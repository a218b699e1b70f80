"""The bone window: HU -> [0, 1], the one intensity mapping of every CT slice model."""

from __future__ import annotations

import numpy as np


def bone_window(hu: np.ndarray, level: float = 700.0, width: float = 2400.0) -> np.ndarray:
    """HU -> [0, 1] through the window ``level +/- width/2`` (float32).

    The default (-500..1900 HU) keeps fat, soft tissue, trabecular bone, sclerotic lesions
    (300-1200 HU) and dense cortex (up to 1900 HU) apart. A -500..1300 window saturated the
    skull base, the dens and the joint surfaces to the same white as the brightest lesions, and
    the segmenters marked them as lesions on every patient.
    """
    low = level - width / 2.0
    return np.clip((np.asarray(hu, np.float32) - np.float32(low)) / np.float32(width), 0.0, 1.0)
