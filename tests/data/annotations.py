"""Masks made the way annotation tools export them, for the annotation and preprocessing tests.

PI-CAI-style lesion masks: NIfTI written by nibabel, each lesion labelled with its ISUP
grade, on an image's grid turned by a small rotation about its origin.
"""

from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def rotation(axis, angle: float) -> np.ndarray:
    """Rodrigues rotation matrix (independent of the code under test)."""
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * cross + (1 - np.cos(angle)) * cross @ cross


def write_nifti_mask(path: Path, labels_zyx: np.ndarray, grid: sitk.Image, turn: np.ndarray | None = None) -> Path:
    """A NIfTI mask written with nibabel, as annotation exports are, on ``grid`` turned by ``turn`` about its origin."""
    direction = (np.eye(3) if turn is None else turn) @ np.asarray(grid.GetDirection()).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = LPS_TO_RAS @ direction @ np.diag(grid.GetSpacing())
    affine[:3, 3] = LPS_TO_RAS @ np.asarray(grid.GetOrigin())
    image = nib.Nifti1Image(labels_zyx.transpose(2, 1, 0).astype(np.uint8), affine)
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    nib.save(image, str(path))
    return path


def corner_displacement_mm(a: sitk.Image, b: sitk.Image) -> float:
    """Largest distance between the two images' box corners, from ITK's own index-to-world maps."""
    size = a.GetSize()
    out = 0.0
    for k in range(8):
        index = [-0.5 + size[axis] * ((k >> axis) & 1) for axis in range(3)]
        pa = np.array(a.TransformContinuousIndexToPhysicalPoint(index))
        pb = np.array(b.TransformContinuousIndexToPhysicalPoint(index))
        out = max(out, float(np.linalg.norm(pa - pb)))
    return out


def picai_like_labels(t2: sitk.Image, lesions: list[tuple[tuple[float, float, float], float, int]]) -> np.ndarray:
    """Ellipsoidal lesions (centre as a fraction of the field of view, radius in mm, ISUP label)."""
    size = np.array(t2.GetSize())
    zz, yy, xx = np.meshgrid(*[np.arange(s) for s in size[::-1]], indexing="ij")
    labels = np.zeros(tuple(size[::-1]), np.uint8)
    spacing = np.array(t2.GetSpacing())
    for (fx, fy, fz), radius, grade in lesions:
        cx, cy, cz = fx * (size[0] - 1), fy * (size[1] - 1), fz * (size[2] - 1)
        inside = (((xx - cx) * spacing[0]) ** 2 + ((yy - cy) * spacing[1]) ** 2
                  + ((zz - cz) * spacing[2]) ** 2) <= radius ** 2
        labels[inside] = grade
    return labels
