"""Grad-CAM of the classifier (MONAI), where the network looks inside the tumour ROI.

Per patient: the 3D map of the bone-metastasis logit on ``layer4`` (the last convolutional
block), upsampled to the ROI and scaled to 0..1 by its maximum inside the scan (the crop's padding,
where the ROI runs past the T2's field of view, is set to zero: :func:`roi_inside`), saved as NIfTI in ROI
geometry (``roi/<patient>.nii.gz``) and resampled into the patient's original T2 geometry
(``t2/<patient>.nii.gz``, zero outside the ROI) so it opens over the T2 in 3D Slicer, plus a
PNG of three orthogonal T2 slices through the tumour centre with the map on top and the mask
outlined. Grad-CAM keeps only regions that raise the logit (ReLU): when none does, the map
is empty, and the PNG title and ``gradcam.csv`` say so rather than showing a blank heat map
(as the CT detector's overlays do).

MONAI's default post-processing (``default_normalizer``) maps the maximum to 0 and the
minimum to 1, inverting the map; the maximum scaling is done here instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import SimpleITK as sitk
import torch

from osteomet.data.geometry import Geometry, coverage_mask, resample_to
from osteomet.data.grids import array_on
from osteomet.data.images import write_image
from osteomet.layout import GRADCAM_TABLE
from osteomet.mri.classifier.data import read_roi
from osteomet.mri.classifier.model import GRADCAM_LAYER
from osteomet.mri.preprocess import load_case
from osteomet.utils.figures import pyplot, save_figure
from osteomet.utils.files import write_text_atomic

T2_CHANNEL = 1  # channels: high-b DWI, T2, ADC


def gradcam_volume(network: torch.nn.Module, roi: np.ndarray, device: torch.device) -> tuple[np.ndarray, float]:
    """Raw Grad-CAM (Z x Y x X, >= 0, ROI resolution) and the probability of one crop (C x Z x Y x X)."""
    from monai.visualize import GradCAM

    cam = GradCAM(nn_module=network, target_layers=GRADCAM_LAYER, postprocessing=lambda x: x)
    x = torch.from_numpy(np.ascontiguousarray(roi, np.float32))[None].to(device)
    network.eval()
    with torch.enable_grad():
        heat = cam(x=x, class_idx=0)
    with torch.no_grad():
        prob = float(torch.sigmoid(network(x).reshape(-1)[0]))
    return heat[0, 0].detach().float().cpu().numpy(), prob


def roi_inside(transform: dict[str, Any]) -> np.ndarray | None:
    """ROI voxels (Z x Y x X, bool) whose centre lies inside the T2 image; the crop pads the others.

    Computed as the crop is made (:func:`osteomet.mri.preprocess.preprocess_case` resamples the
    channels, on the T2 grid, onto the ROI grid with zero outside it), from the two grids the
    case's ``transform.json`` records; None when it records no ROI.
    """
    if not transform.get("roi_geometry") or not transform.get("t2_geometry"):
        return None
    t2 = Geometry.from_dict(transform["t2_geometry"])
    inside = coverage_mask(t2.blank(sitk.sitkUInt8), Geometry.from_dict(transform["roi_geometry"]))
    return sitk.GetArrayFromImage(inside) > 0


def scale_map(heat: np.ndarray, inside: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    """Map scaled to 0..1 by its maximum inside the image, zero in the crop's padding; and whether it is empty.

    Why: where the ROI runs past the scan the crop is padded, and the network's response to the
    padding's edge is no finding; scaled with it, the padding took the colour scale's top and the
    tumour looked cold (real ProstateX tumours near the field-of-view edge).
    """
    heat = np.asarray(heat, np.float32)
    if inside is not None:
        heat = np.where(inside, heat, 0.0).astype(np.float32)
    peak = float(np.nanmax(heat)) if heat.size else 0.0
    if not peak > 0:
        return np.zeros_like(heat, dtype=np.float32), True
    return np.clip(heat / peak, 0.0, 1.0).astype(np.float32), False


def tumour_centre(mask: np.ndarray | None, shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Voxel (z, y, x) of the tumour's centre of mass in the ROI; the ROI centre without a mask."""
    if mask is None or not np.any(mask):
        return tuple(int(s // 2) for s in shape)  # type: ignore[return-value]
    return tuple(round(float(c)) for c in np.argwhere(mask > 0).mean(axis=0))  # type: ignore[return-value]


def save_overlay(t2: np.ndarray, heat: np.ndarray, mask: np.ndarray | None, centre: tuple[int, int, int],
                 spacing_xyz: tuple[float, float, float], path: Path, title: str,
                 inside: np.ndarray | None = None) -> Path:
    """PNG of :func:`overlay_figure`."""
    return save_figure(overlay_figure(t2, heat, mask, centre, spacing_xyz, title, inside), path, tight_bbox=True)


def overlay_figure(t2: np.ndarray, heat: np.ndarray, mask: np.ndarray | None, centre: tuple[int, int, int],
                   spacing_xyz: tuple[float, float, float], title: str, inside: np.ndarray | None = None) -> Any:
    """Axial, coronal and sagittal T2 slices through ``centre`` with the map and the mask outline.

    Voxels outside the image (``inside`` False: the crop's padding) are drawn black with no map on them.
    """
    plt = pyplot()

    z, y, x = centre
    sx, sy, sz = spacing_xyz
    views = [("axial", np.s_[z, :, :], sy / sx), ("coronal", np.s_[:, y, :], sz / sx),
             ("sagittal", np.s_[:, :, x], sz / sy)]
    fig, axes = plt.subplots(1, 3, figsize=(9, 3.4), dpi=100)
    outside = np.zeros(t2.shape, bool) if inside is None else ~np.asarray(inside, bool)
    low, high = np.percentile(t2[~outside], [1, 99]) if (~outside).any() else (0.0, 1.0)
    gray = plt.get_cmap("gray").with_extremes(bad="black")
    jet = plt.get_cmap("jet").with_extremes(bad=(0, 0, 0, 0))
    for ax, (name, index, aspect) in zip(axes, views):
        flip = name != "axial"  # head up in coronal and sagittal views
        show = (lambda a: a[::-1]) if flip else (lambda a: a)
        pad = show(outside[index])
        ax.imshow(np.ma.masked_array(show(t2[index]), pad), cmap=gray, vmin=low, vmax=high, aspect=aspect,
                  interpolation="nearest")
        ax.imshow(np.ma.masked_array(show(heat[index]), pad), cmap=jet, alpha=0.35, vmin=0, vmax=1, aspect=aspect,
                  interpolation="nearest")
        if mask is not None and mask[index].any():
            ax.contour(show(mask[index].astype(float)), levels=[0.5], colors="lime", linewidths=0.8)
        ax.set_title(name + (" (black: outside the scan)" if pad.any() else ""), fontsize=8)
        ax.axis("off")
    fig.suptitle(title, fontsize=8)
    return fig


def gradcam_patient(network: torch.nn.Module, preprocessed: str | Path, patient_id: str, out: str | Path,
                    device: torch.device) -> dict[str, Any]:
    """Grad-CAM NIfTIs (ROI and T2 geometry) and PNG of one patient; returns its gradcam.csv row."""
    out = Path(out)
    roi = read_roi(preprocessed, patient_id)
    arrays, transform = load_case(preprocessed, patient_id)
    mask = np.asarray(arrays["roi_mask"]) if "roi_mask" in arrays else None
    raw, prob = gradcam_volume(network, roi, device)
    inside = roi_inside(transform)
    heat, empty = scale_map(raw, inside)
    roi_geometry = Geometry.from_dict(transform["roi_geometry"])
    roi_image = array_on(roi_geometry, heat)
    roi_path = write_image(roi_image, out / "roi" / f"{patient_id}.nii.gz")
    t2_image = resample_to(roi_image, Geometry.from_dict(transform["t2_geometry"]), interpolator=sitk.sitkLinear)
    t2_path = write_image(t2_image, out / "t2" / f"{patient_id}.nii.gz")
    centre = tumour_centre(mask, heat.shape)
    note = " (Grad-CAM empty: no region raises the logit)" if empty else ""
    png = save_overlay(roi[T2_CHANNEL], heat, mask, centre, roi_geometry.spacing, out / "png" / f"{patient_id}.png",
                       f"{patient_id}: p(bone metastasis) = {prob:.2f}{note}", inside=inside)
    scan = inside if inside is not None else np.ones(heat.shape, bool)
    tumour = (mask > 0) & scan if mask is not None else np.zeros(heat.shape, bool)
    rest = scan & ~tumour if mask is not None else np.zeros(heat.shape, bool)  # the padding is no tissue
    return {"patient_id": patient_id, "prob": prob, "cam_empty": empty,
            "mean_in_tumour": float(heat[tumour].mean()) if tumour.any() else float("nan"),
            "mean_outside": float(heat[rest].mean()) if rest.any() else float("nan"),
            "roi_nifti": str(roi_path), "t2_nifti": str(t2_path), "png": str(png)}


def gradcam_cohort(model: str | Path, preprocessed: str | Path, patient_ids: list[str], out: str | Path, *,
                   device: str | None = None, progress: Callable[[], None] | None = None) -> pd.DataFrame:
    """Grad-CAM of the chosen model for ``patient_ids``; writes ``gradcam.csv`` and returns it."""
    from osteomet.mri.classifier.predict import load_model

    network, _, _, dev = load_model(model, device)
    rows = []
    for pid in patient_ids:
        rows.append(gradcam_patient(network, preprocessed, pid, out, dev))
        if progress:
            progress()
    table = pd.DataFrame(rows, columns=["patient_id", "prob", "cam_empty", "mean_in_tumour", "mean_outside",
                                        "roi_nifti", "t2_nifti", "png"])
    write_text_atomic(Path(out) / GRADCAM_TABLE, table.to_csv(index=False))
    return table
