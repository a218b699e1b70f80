"""The two centres' scanners (grids, vendor intensity scale, obliquity) and their grids in world space.

Vendor intensity scale and grids follow the two centres of the reproduced study (GE
512/0.39 mm T2, Siemens 320/0.63 mm T2, 4 mm slices; DWI 256 matrix).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

B_VALUE = 1400.0  # s/mm2, high-b DWI of the study


@dataclass(frozen=True)
class SequenceGrid:
    matrix: int  # in-plane matrix at scale 1
    spacing_mm: float  # in-plane spacing at scale 1
    slices: int
    slice_mm: float


@dataclass(frozen=True)
class CentreSpec:
    """Scanner of one centre: grids, vendor intensity scale and obliquity."""

    vendor: str
    t2: SequenceGrid
    dwi: SequenceGrid
    t2_scale: float
    t2_offset: float
    dwi_scale: float
    tilt_deg: float  # rotation about the left-right axis (oblique axial)


CENTRES: dict[str, CentreSpec] = {
    "C1": CentreSpec("GE 3T", SequenceGrid(512, 0.39, 24, 4.0), SequenceGrid(256, 0.78, 20, 4.0),
                     t2_scale=1000.0, t2_offset=0.0, dwi_scale=900.0, tilt_deg=0.0),
    "C2": CentreSpec("Siemens 3T", SequenceGrid(320, 0.63, 24, 4.0), SequenceGrid(256, 1.0, 20, 4.0),
                     t2_scale=420.0, t2_offset=25.0, dwi_scale=260.0, tilt_deg=4.0),
}



def _rotation_x(deg: float) -> np.ndarray:
    t = np.deg2rad(deg)
    return np.array([[1, 0, 0], [0, np.cos(t), -np.sin(t)], [0, np.sin(t), np.cos(t)]])


def make_grid(seq: SequenceGrid, scale: float, centre_mm: np.ndarray, direction: np.ndarray,
              slices: int | None = None, min_spacing_mm: float = 0.0) -> sitk.Image:
    """Blank image whose grid is centred on ``centre_mm`` (the scanner's field of view).

    The matrix shrinks by ``scale`` but never below the resolution ``min_spacing_mm``
    asks for; the field of view is kept either way.
    """
    fov = seq.matrix * seq.spacing_mm
    matrix = max(16, int(round(seq.matrix * scale)))
    if min_spacing_mm > 0:
        matrix = min(matrix, int(fov // min_spacing_mm))
    spacing = fov / matrix
    n_slices = slices or seq.slices
    size = np.array([matrix, matrix, n_slices])
    spacing_v = np.array([spacing, spacing, seq.slice_mm])
    origin = centre_mm - direction @ ((size - 1) / 2.0 * spacing_v)
    image = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    image.SetSpacing([float(s) for s in spacing_v])
    image.SetOrigin([float(o) for o in origin])
    image.SetDirection([float(d) for d in direction.ravel()])
    return image


def world_coordinates(image: sitk.Image) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World x, y, z of every voxel centre, as arrays in numpy (z, y, x) order."""
    size = image.GetSize()
    k, j, i = np.meshgrid(np.arange(size[2]), np.arange(size[1]), np.arange(size[0]), indexing="ij")
    idx = np.stack([i, j, k], axis=-1).astype(np.float32) * np.asarray(image.GetSpacing(), np.float32)
    direction = np.asarray(image.GetDirection(), np.float32).reshape(3, 3)
    world = idx @ direction.T + np.asarray(image.GetOrigin(), np.float32)
    return world[..., 0], world[..., 1], world[..., 2]
