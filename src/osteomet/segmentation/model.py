"""The 3-channel UNETR (MONAI) and safe checkpoint files."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from osteomet.segmentation.config import SegmentationConfig
from osteomet.utils.files import atomic_path


def build_unetr(config: SegmentationConfig) -> torch.nn.Module:
    from monai.networks.nets import UNETR

    x, y, z = config.patch_size
    u = config.unetr
    model = UNETR(in_channels=3, out_channels=2, img_size=(z, y, x), feature_size=u.feature_size,
                 hidden_size=u.hidden_size, mlp_dim=u.mlp_dim, num_heads=u.num_heads, dropout_rate=u.dropout_rate,
                 norm_name="instance", res_block=True, spatial_dims=3)
    # Prior initialisation (as for focal loss): start by predicting the tumour as rare as it
    # is, instead of everywhere; otherwise the first epochs are spent unlearning false positives.
    with torch.no_grad():
        bias = model.out.conv.conv.bias
        prior = config.foreground_prior
        bias.copy_(torch.tensor([math.log(1 - prior), math.log(prior)], dtype=bias.dtype))
    return model


def save_state(state: dict[str, Any], path: str | Path) -> Path:
    """torch.save of tensors and plain Python values only (loadable with weights_only=True), atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_state(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint does not exist")
    return torch.load(path, map_location=device, weights_only=True)
