"""Segmentation overlays: the automatic mask outlined on the preprocessed T2 slice where it is largest.

A reader checks a segmentation model by looking at it, not only at its Dice. The overlay is
drawn on the segmentation grid (the UNETR's input), onto which the mask in T2 geometry is
brought back with the same resampling preprocessing used; the mask preprocessing cropped
with (manifest, reviewed or earlier automatic mask) is outlined too when the case has one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from osteomet.data.geometry import Geometry
from osteomet.data.grids import mask_to
from osteomet.data.label_masks import read_mask
from osteomet.layout import AUTO_DIR, MASK_SUFFIX
from osteomet.mri.preprocess import CHANNELS, load_case
from osteomet.utils.figures import pyplot, save_figure

T2_CHANNEL = CHANNELS.index("t2")


def overlay_arrays(preprocessed: str | Path, patient_id: str, mask: str | Path
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(T2 on the segmentation grid, the mask on that grid, the preprocessing mask or None), arrays (z, y, x)."""
    arrays, transform = load_case(preprocessed, patient_id)
    seg_geometry = Geometry.from_dict(transform["seg_geometry"])
    t2 = np.asarray(arrays["seg_image"][T2_CHANNEL], dtype=np.float32)
    auto = sitk.GetArrayFromImage(mask_to(read_mask(mask, allow_empty=True), seg_geometry)).astype(bool)
    used = np.asarray(arrays["seg_mask"]).astype(bool) if "seg_mask" in arrays else None
    return t2, auto, used


def overlay_figure(preprocessed: str | Path, patient_id: str, mask: str | Path, *, title: str | None = None) -> Any:
    """Matplotlib figure: the axial slice with the largest automatic mask area (the middle slice if empty)."""
    plt = pyplot()
    t2, auto, used = overlay_arrays(preprocessed, patient_id, mask)
    area = auto.sum(axis=(1, 2))
    if area.any():
        z = int(np.argmax(area))
    elif used is not None and used.any():
        z = int(np.argmax(used.sum(axis=(1, 2))))
    else:
        z = t2.shape[0] // 2
    fig, ax = plt.subplots(figsize=(3.4, 3.6), dpi=100)
    low, high = np.percentile(t2, [1, 99])
    ax.imshow(t2[z], cmap="gray", vmin=low, vmax=high)
    if used is not None and used[z].any():
        ax.contour(used[z].astype(float), levels=[0.5], colors="lime", linewidths=0.9)
    if auto[z].any():
        ax.contour(auto[z].astype(float), levels=[0.5], colors="red", linewidths=0.9)
    ax.set_title(title or f"{patient_id}: slice {z}", fontsize=8)
    ax.axis("off")
    legend = "red: automatic mask" + ("; green: preprocessing mask" if used is not None else "")
    fig.text(0.5, 0.02, legend, ha="center", fontsize=7)
    return fig


def write_overlays(preprocessed: str | Path, segdir: str | Path, patient_ids: list[str],
                   out: str | Path | None = None) -> list[Path]:
    """PNG overlays of ``SEGDIR/auto/<patient>.nii.gz`` into ``out`` (default ``SEGDIR/overlays``)."""
    segdir = Path(segdir)
    out = Path(out) if out else segdir / "overlays"
    return [save_figure(overlay_figure(preprocessed, pid, segdir / AUTO_DIR / f"{pid}{MASK_SUFFIX}"),
                        out / f"{pid}.png", tight_bbox=True) for pid in patient_ids]
