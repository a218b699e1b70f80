"""Grad-CAM overlays (MONAI) for slices a detector called positive: true and false positives.

Why both: true positives show whether the network looks at the lesion; false positives show
what fools it (degenerative sclerosis, cortical bone, contrast), which a reader of the paper
needs to judge the detector.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from osteomet.ct.detection.models import GRADCAM_LAYERS
from osteomet.ct.slices import SliceStore
from osteomet.utils.files import atomic_path


def gradcam_map(model: torch.nn.Module, architecture: str, image: np.ndarray, device: torch.device) -> np.ndarray:
    """Grad-CAM heat map (N x N, 0..1) of the lesion logit for one slice (N x N, windowed)."""
    from monai.visualize import GradCAM

    cam = GradCAM(nn_module=model, target_layers=GRADCAM_LAYERS[architecture])
    x = torch.from_numpy(np.ascontiguousarray(image, np.float32))[None, None].to(device)
    model.eval()
    with torch.enable_grad():
        heat = cam(x=x, class_idx=0)
    return heat[0, 0].detach().cpu().numpy()


def save_overlay(image: np.ndarray, heat: np.ndarray, mask: np.ndarray | None, path: Path, title: str) -> Path:
    """PNG: the slice in the bone window, the Grad-CAM map on top, the reference lesion outlined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    ax.imshow(image, cmap="gray", vmin=0, vmax=1)
    ax.imshow(heat, cmap="jet", alpha=0.35, vmin=0, vmax=1)
    if mask is not None and mask.any():
        ax.contour(mask.astype(float), levels=[0.5], colors="lime", linewidths=0.8)
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, bbox_inches="tight")
    plt.close(fig)
    return path


def write_gradcam_overlays(model: torch.nn.Module, architecture: str, store: SliceStore, scores: pd.DataFrame,
                           threshold: float, out: Path, max_per_kind: int, device: torch.device) -> pd.DataFrame:
    """Overlays of the most confident true and false positives among labelled slices; returns what was written."""
    labelled = scores.dropna(subset=["label"])
    called = labelled[labelled["probability"] >= threshold].sort_values("probability", ascending=False)
    rows = []
    for kind, part in (("true_positive", called[called["label"] == 1]), ("false_positive", called[called["label"] == 0])):
        for item in part.head(max_per_kind).itertuples():
            arrays = store.case(item.patient_id)[0]
            image = np.asarray(arrays["image"][int(item.slice)], np.float32)
            mask = np.asarray(arrays["mask"][int(item.slice)]) if "mask" in arrays else None
            heat = gradcam_map(model, architecture, image, device)
            # Grad-CAM keeps only regions that raise the logit (ReLU); a slice called positive with a
            # negative logit everywhere gives an empty map, which the title says rather than hides.
            empty = not np.nanmax(heat) > 0
            path = out / kind / f"{item.patient_id}_slice{int(item.slice):04d}.png"
            save_overlay(image, heat, mask, path,
                         f"{architecture} {kind.replace('_', ' ')}: {item.patient_id} slice {int(item.slice)} "
                         f"p={item.probability:.2f}" + (" (Grad-CAM empty: no region raises the logit)" if empty else ""))
            rows.append({"kind": kind, "patient_id": item.patient_id, "slice": int(item.slice),
                         "probability": float(item.probability), "cam_empty": empty, "png": str(path)})
    return pd.DataFrame(rows, columns=["kind", "patient_id", "slice", "probability", "cam_empty", "png"])
