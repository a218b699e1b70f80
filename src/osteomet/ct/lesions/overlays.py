"""Pictures a radiologist checks a CT prediction with: each lesion on the axial slice through its centre.

Bone window (level 400, width 1800 HU: cortex and sclerotic lesions apart, marrow grey), the
lesion's outline drawn from the mask itself (red), a box around it, and a title with the lesion's
bone, volume and mean HU. Slices are shown in radiological convention as SimpleITK's LPS arrays
come: patient right on the image left.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

PathLike = str | os.PathLike[str]

#: Bone window of the overlays (HU).
BONE_WINDOW = (400.0, 1800.0)


def _windowed(slice_hu: np.ndarray, level: float, width: float) -> np.ndarray:
    low = level - width / 2
    return np.clip((slice_hu - low) / width, 0.0, 1.0)


def lesion_overlays(ct: sitk.Image, mask: sitk.Image, lesions: pd.DataFrame, out: PathLike, *,
                    max_lesions: int = 12) -> list[Path]:
    """One PNG per lesion (largest first, up to ``max_lesions``): ``lesion_<id>.png`` in ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import ndimage

    from osteomet.data.lesions import STRUCTURE
    from osteomet.utils.files import atomic_path

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    volume = sitk.GetArrayFromImage(ct).astype(np.float32)
    labels, _ = ndimage.label(sitk.GetArrayFromImage(mask) > 0, structure=STRUCTURE)
    written = []
    for row in lesions.sort_values("volume_ml", ascending=False).head(max_lesions).itertuples():
        z = int(round(row.centroid_z_vox))
        # the analysis numbers lesions as the labelling does; find this one by its centre voxel, else by overlap
        x, y = int(round(row.centroid_x_vox)), int(round(row.centroid_y_vox))
        label = labels[z, y, x] if labels[z, y, x] else np.bincount(labels[z].ravel()).argmax()
        outline = labels[z] == label if label else labels[z] > 0
        fig, ax = plt.subplots(figsize=(4.2, 4.4))
        ax.imshow(_windowed(volume[z], *BONE_WINDOW), cmap="gray", interpolation="nearest")
        if outline.any():
            ax.contour(outline.astype(float), levels=[0.5], colors=["#ff3030"], linewidths=1.2)
            rows, cols = np.nonzero(outline)
            pad = 6
            ax.add_patch(plt.Rectangle((cols.min() - pad, rows.min() - pad), np.ptp(cols) + 2 * pad, np.ptp(rows) + 2 * pad,
                                       fill=False, edgecolor="#ffd000", linewidth=0.8))
        bone = getattr(row, "bone_name", None)
        bone = bone if isinstance(bone, str) and bone else "bone unknown (no bone map)"
        ax.set_title(f"lesion {int(row.lesion_id)}: {bone}\n{row.volume_ml:.2f} mL, mean {row.mean_hu:.0f} HU, "
                     f"slice {z}", fontsize=8)
        ax.axis("off")
        path = out / f"lesion_{int(row.lesion_id)}.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
        plt.close(fig)
        written.append(path)
    return written
