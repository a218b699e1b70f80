"""Surface distances between two binary masks in millimetres: the 95th-percentile Hausdorff distance.

Surfaces are the mask voxels with a 6-connected neighbour outside the mask; distances are
Euclidean in physical units (the voxel spacing), from every surface voxel of one mask to the
nearest surface voxel of the other. HD95 is the larger of the two directed 95th percentiles,
as MONAI's ``compute_hausdorff_distance(percentile=95, directed=False)`` defines it. With an
empty mask on either side the distance is undefined (NaN), never 0 or infinity.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from scipy import ndimage

from osteomet.evaluation.errors import EvaluationInputError


def _surface(mask: np.ndarray) -> np.ndarray:
    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(mask.ndim, 1),
                                    border_value=0)
    return mask & ~eroded


def _directed(from_surface: np.ndarray, to_surface: np.ndarray, spacing: Sequence[float],
              percentile: float) -> float:
    distance_to = ndimage.distance_transform_edt(~to_surface, sampling=spacing)
    return float(np.percentile(distance_to[from_surface], percentile))


def hausdorff_distance(prediction: np.ndarray, reference: np.ndarray, spacing: Sequence[float],
                       percentile: float = 95.0) -> float:
    """Symmetric percentile Hausdorff distance (mm) between two masks of one grid (array axis order)."""
    p, r = np.asarray(prediction).astype(bool), np.asarray(reference).astype(bool)
    if p.shape != r.shape:
        raise EvaluationInputError(f"prediction shape {p.shape} != reference shape {r.shape}")
    if len(spacing) != p.ndim:
        raise EvaluationInputError(f"spacing has {len(spacing)} values for a {p.ndim}-D mask")
    if not p.any() or not r.any():
        return math.nan
    sp, sr = _surface(p), _surface(r)
    return max(_directed(sp, sr, spacing, percentile), _directed(sr, sp, spacing, percentile))
