"""Grad-CAM overlays (MONAI) for slices a detector called positive: true and false positives.

Why both: true positives show whether the network looks at the lesion; false positives show
what fools it (degenerative sclerosis, cortical bone, contrast), which a reader of the paper
needs to judge the detector. For every true positive the distance (mm) from the Grad-CAM
maximum to the nearest lesion pixel is recorded (``cam_lesion_mm``; 0 inside a lesion), so
"the network looks at the lesion" is a number: the share of true positives within 10 mm.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from osteomet.ct.detection.models import GRADCAM_LAYERS
from osteomet.ct.detection.tiles import BoneTiles
from osteomet.utils.figures import pyplot, save_figure


def gradcam_map(model: torch.nn.Module, architecture: str, image: np.ndarray, device: torch.device) -> np.ndarray:
    """Grad-CAM heat map (N x N, 0..1) of the lesion logit for one input (channels x N x N, windowed).

    The map is scaled by its maximum here: MONAI's default post-processing (1.6) maps the
    maximum to 0 and the minimum to 1, which would put the "peak" where the network looks least.
    An all-zero map (no region raises the logit) stays zero.
    """
    from monai.visualize import GradCAM

    cam = GradCAM(nn_module=model, target_layers=GRADCAM_LAYERS[architecture], postprocessing=lambda x: x)
    x = torch.from_numpy(np.ascontiguousarray(image, np.float32))[None].to(device)
    model.eval()
    with torch.enable_grad():
        heat = cam(x=x, class_idx=0)[0, 0].detach().cpu().numpy()
    top = float(np.nanmax(heat)) if heat.size else 0.0
    return heat / top if top > 0 else np.zeros_like(heat)


def save_overlay(image: np.ndarray, heat: np.ndarray, mask: np.ndarray | None, path: Path, title: str) -> Path:
    """PNG: the slice in the bone window, the Grad-CAM map on top, the reference lesion outlined."""
    plt = pyplot()

    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    ax.imshow(image, cmap="gray", vmin=0, vmax=1)
    ax.imshow(heat, cmap="jet", alpha=0.35, vmin=0, vmax=1)
    if mask is not None and mask.any():
        ax.contour(mask.astype(float), levels=[0.5], colors="lime", linewidths=0.8)
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    return save_figure(fig, path, tight_bbox=True)


def peak_to_lesion_mm(heat: np.ndarray, mask: np.ndarray, pixel_mm: float) -> float:
    """Distance (mm) from the heat map's maximum to the nearest lesion pixel; NaN without map or lesion."""
    from scipy import ndimage

    if mask is None or not mask.any() or not np.nanmax(heat) > 0:
        return float("nan")
    peak = np.unravel_index(int(np.nanargmax(heat)), heat.shape)
    distance = ndimage.distance_transform_edt(mask == 0)
    return float(distance[peak] * pixel_mm)


def write_gradcam_overlays(model: torch.nn.Module, architecture: str, tiles: BoneTiles, scores: pd.DataFrame,
                           threshold: float, out: Path, max_per_kind: int, device: torch.device) -> pd.DataFrame:
    """Grad-CAM of every labelled slice called positive, overlays of the most confident ``max_per_kind`` per kind.

    Grad-CAM runs on the slice's tile of highest probability (the one that made the call).
    Returns one row per slice called positive (kind, probability, whether the map is empty, the
    distance from its maximum to the lesion for true positives, NaN when that tile holds no
    lesion; the overlay written if any).
    """
    from osteomet.ct.detection.train import tile_probabilities

    labelled = scores.dropna(subset=["label"])
    called = labelled[labelled["probability"] >= threshold].sort_values("probability", ascending=False)
    rows = []
    centre = tiles.settings.context
    for kind, part in (("true_positive", called[called["label"] == 1]), ("false_positive", called[called["label"] == 0])):
        for rank, item in enumerate(part.itertuples()):
            stack, centres = tiles.slice_tiles(item.patient_id, int(item.slice))
            best = int(np.argmax(tile_probabilities(model, stack, 64, device)))
            x = stack[best]
            mask = tiles.tile_mask(item.patient_id, int(item.slice), *centres[best])
            heat = gradcam_map(model, architecture, x, device)
            # Grad-CAM keeps only regions that raise the logit (ReLU); a slice called positive with a
            # negative logit everywhere gives an empty map, which the title says rather than hides.
            empty = not np.nanmax(heat) > 0
            distance = peak_to_lesion_mm(heat, mask, tiles.pixel_mm()) if kind == "true_positive" else float("nan")
            png = ""
            if rank < max_per_kind:
                path = out / kind / f"{item.patient_id}_slice{int(item.slice):04d}.png"
                save_overlay(x[centre], heat, mask, path,
                             f"{architecture} {kind.replace('_', ' ')}: {item.patient_id} slice {int(item.slice)} "
                             f"p={item.probability:.2f}" + (" (Grad-CAM empty: no region raises the logit)" if empty else ""))
                png = str(path)
            rows.append({"kind": kind, "patient_id": item.patient_id, "slice": int(item.slice),
                         "probability": float(item.probability), "cam_empty": empty, "cam_lesion_mm": distance,
                         "png": png})
    return pd.DataFrame(rows, columns=["kind", "patient_id", "slice", "probability", "cam_empty", "cam_lesion_mm", "png"])


def localisation_summary(rows: pd.DataFrame, within_mm: float = 10.0) -> dict:
    """Share of true-positive slices whose Grad-CAM maximum lies within ``within_mm`` of a lesion."""
    tp = rows[rows["kind"] == "true_positive"]
    hits = int((tp["cam_lesion_mm"] <= within_mm).sum())
    return {"true_positives": int(len(tp)), "within_mm": within_mm, "within": hits,
            "fraction": hits / len(tp) if len(tp) else float("nan"), "empty_maps": int(tp["cam_empty"].sum())}
