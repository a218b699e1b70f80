"""Small volumes and DICOM header look-ups shared by the image-reading tests."""

from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk


def oblique_image(size=(20, 18, 8), spacing=(1.5, 1.2, 4.0), origin=(-10.0, 5.0, 2.0), tilt=15.0, value=None):
    t = np.deg2rad(tilt)
    direction = [1, 0, 0, 0, np.cos(t), -np.sin(t), 0, np.sin(t), np.cos(t)]
    array = value if value is not None else np.random.default_rng(0).normal(size=size[::-1]).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    return image


def sphere(grid: sitk.Image, centre_mm, radius_mm) -> np.ndarray:
    size = grid.GetSize()
    idx = np.stack(np.meshgrid(*[np.arange(s) for s in size], indexing="ij"), -1).reshape(-1, 3)
    world = np.array([grid.TransformIndexToPhysicalPoint([int(a) for a in i]) for i in idx])
    inside = np.linalg.norm(world - np.asarray(centre_mm), axis=1) <= radius_mm
    return inside.reshape(size).transpose(2, 1, 0).astype(np.uint8)


def volume(shape=(12, 20, 24)) -> sitk.Image:
    array = np.random.default_rng(1).normal(300, 50, shape).astype(np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((0.7, 0.7, 3.0))
    image.SetOrigin((-8.0, 4.0, 20.0))
    return image


def truncate(path: Path, fraction: float) -> Path:
    data = path.read_bytes()
    cut = path.with_name(f"cut{int(fraction * 100)}_{path.name}")
    cut.write_bytes(data[: int(len(data) * fraction)])
    return cut


def nibabel_nifti(path: Path, array_xyz: np.ndarray, slope: float | None = None) -> Path:
    image = nib.Nifti1Image(array_xyz, np.diag([0.7, 0.7, 3.0, 1.0]))
    if slope is not None:
        image.header.set_slope_inter(slope, 10.0)
    nib.save(image, str(path))
    return path


def slice_position(path: Path) -> float:
    """Position of one DICOM file along its slice normal, from its own header."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    ipp = np.array(reader.GetMetaData("0020|0032").split("\\"), float)
    iop = np.array(reader.GetMetaData("0020|0037").split("\\"), float)
    return float(ipp @ np.cross(iop[:3], iop[3:]))


def series_uid(folder: Path) -> str:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(next(folder.iterdir())))
    reader.ReadImageInformation()
    return reader.GetMetaData("0020|000e").strip()


def mixed_series_folder(case: Path, folder: Path, series: tuple[str, ...] = ("t2w", "adc")) -> Path:
    """``series`` of a ProstateX case copied into one folder, as a PACS export often leaves them (two series, one
    folder); file names prefixed by the series so none collide."""
    import shutil

    folder.mkdir(parents=True)
    for kind in series:
        for file in (case / kind).iterdir():
            shutil.copy(file, folder / f"{kind}-{file.name}")
    return folder
