"""Grad-CAM overlays (MONAI) for slices a detector called positive: true and false positives.

Why both: true positives show whether the network looks at the lesion; false positives show
what fools it (degenerative sclerosis, cortical bone, contrast), which a reader of the paper
needs to judge the detector. For every true positive the distance (mm) from the Grad-CAM
maximum to the nearest lesion pixel is recorded (``cam_lesion_mm``; 0 inside a lesion), so
"the network looks at the lesion" is a number: the share of true positives within 10 mm.

Each overlay shows, side by side, the whole axial slice with the tile marked, the plain tile the
network was given, and the tile under the map (:func:`save_overlay`), titled with the slice's
score, the threshold and the reference label.
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


def save_overlay(image: np.ndarray, heat: np.ndarray, mask: np.ndarray | None, path: Path, title: str, *,
                 context: np.ndarray | None = None, box: tuple[int, int, int] | None = None,
                 spacing: tuple[float, float] = (1.0, 1.0), window: str = "bone window") -> Path:
    """PNG, side by side: [the whole axial slice with the tile marked,] the tile the network was given, and the
    same tile with the Grad-CAM map on top and the reference lesion outlined.

    Why beside: the map hides the bone under it, so a reader must see the plain tile at the same size to
    tell what the network looks at; the whole slice says where in the body the tile lies. ``image``,
    ``context`` are windowed to 0..1 (``window`` names the window); ``box`` is the tile's centre row,
    column and side in ``context`` pixels of ``spacing`` (x, y) mm.
    """
    plt = pyplot()

    panels = 3 if context is not None else 2
    fig, axes = plt.subplots(1, panels, figsize=(3.1 * panels, 3.5), dpi=100)
    if context is not None:
        ax = axes[0]
        h, w = context.shape
        sx, sy = spacing
        ax.imshow(context, cmap="gray", vmin=0, vmax=1, extent=(0, w * sx, h * sy, 0), interpolation="nearest")
        if box is not None:
            cy, cx, side = box
            ax.add_patch(plt.Rectangle(((cx - side // 2) * sx, (cy - side // 2) * sy), side * sx, side * sy,
                                       fill=False, edgecolor="#ffd000", linewidth=1.2))
        ax.set_title(f"axial slice ({window}), tile in yellow", fontsize=8)
        ax.axis("off")
    tile_ax, cam_ax = axes[-2], axes[-1]
    tile_ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    tile_ax.set_title("network input (tile)" + (", reference lesion green" if mask is not None else ""), fontsize=8)
    cam_ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    # the lowest tenth of the map left clear: the bone under a map that says nothing stays readable
    cam_ax.imshow(np.ma.masked_less(heat, 0.1), cmap="jet", alpha=0.45, vmin=0, vmax=1, interpolation="bilinear")
    cam_ax.set_title("Grad-CAM (red: most evidence)", fontsize=8)
    for ax in (tile_ax, cam_ax):
        if mask is not None and mask.any():
            ax.contour(mask.astype(float), levels=[0.5], colors="lime", linewidths=0.9)
        ax.axis("off")
    fig.suptitle(title, fontsize=8.5)
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
    """Grad-CAM of every slice called positive, overlays of the most confident ``max_per_kind`` per kind.

    Kinds: ``true_positive`` and ``false_positive`` for labelled slices, ``flagged`` for slices
    without a reference (a new patient of ``predict ct``: what a reader checks first).
    Grad-CAM runs on the slice's tile of highest probability (the one that made the call).
    Returns one row per slice called positive (kind, probability, whether the map is empty, the
    distance from its maximum to the lesion for true positives, NaN when that tile holds no
    lesion; the overlay written if any).
    """
    from osteomet.ct.detection.train import tile_probabilities

    called = scores[scores["probability"] >= threshold].sort_values("probability", ascending=False)
    rows = []
    centre = tiles.settings.context
    for kind, part in (("true_positive", called[called["label"] == 1]), ("false_positive", called[called["label"] == 0]),
                       ("flagged", called[called["label"].isna()].head(max_per_kind))):  # no statistics: top only
        for rank, item in enumerate(part.itertuples()):
            stack, centres = tiles.slice_tiles(item.patient_id, int(item.slice))
            best = int(np.argmax(tile_probabilities(model, stack, 64, device)))
            x = stack[best]
            mask = tiles.tile_mask(item.patient_id, int(item.slice), *centres[best]) if kind != "flagged" else None
            heat = gradcam_map(model, architecture, x, device)
            # Grad-CAM keeps only regions that raise the logit (ReLU); a slice called positive with a
            # negative logit everywhere gives an empty map, which the title says rather than hides.
            empty = not np.nanmax(heat) > 0
            distance = peak_to_lesion_mm(heat, mask, tiles.pixel_mm()) if kind == "true_positive" else float("nan")
            png = ""
            if rank < max_per_kind:
                path = out / kind / f"{item.patient_id}_slice{int(item.slice):04d}.png"
                settings = tiles.store.case(item.patient_id)[1].get("config", {})
                window = (f"window L{settings['window_level']:g}/W{settings['window_width']:g} HU"
                          if {"window_level", "window_width"} <= set(settings) else "bone window")
                reference = ("none (a new patient)" if kind == "flagged" else
                             "lesion on this slice" if int(item.label) == 1 else "no lesion on this slice")
                save_overlay(x[centre], heat, mask, path,
                             f"{architecture} {kind.replace('_', ' ')}: {item.patient_id} slice {int(item.slice)}, "
                             f"score {item.probability:.2f} (threshold {threshold:.2f}); reference: {reference}"
                             + ("\nGrad-CAM empty: no region raises the logit" if empty else ""),
                             context=np.asarray(tiles.store.array(item.patient_id, "image")[int(item.slice)],
                                                np.float32),
                             box=(int(centres[best][0]), int(centres[best][1]), tiles.side_px(item.patient_id)),
                             spacing=tiles.store.spacing(item.patient_id), window=window)
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
