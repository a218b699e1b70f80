"""The bone window: HU -> [0, 1], the intensity mapping of the CT slice models (each task's config sets its window)."""

from __future__ import annotations

import numpy as np


def bone_window(hu: np.ndarray, level: float = 700.0, width: float = 2400.0) -> np.ndarray:
    """HU -> [0, 1] through the window ``level +/- width/2`` (float32).

    The default (-500..1900 HU, the segmentation presets) keeps fat, soft tissue, trabecular
    bone, sclerotic lesions (300-1200 HU) and dense cortex (up to 1900 HU) apart, so a segmenter
    does not take the skull base, the dens or joint surfaces for lesions. The detection presets
    use -500..1300 HU (level 400, width 1800): a slice classifier sees whole tiles, and the
    wider window scored no better there (see ``ct/detection/configs``).
    """
    low = level - width / 2.0
    return np.clip((np.asarray(hu, np.float32) - np.float32(low)) / np.float32(width), 0.0, 1.0)
