"""The 3-channel UNETR (MONAI); its checkpoints go through :mod:`osteomet.training.checkpoint`."""

from __future__ import annotations

import torch

from osteomet.mri.segmentation.config import SegmentationConfig
from osteomet.utils.torch import set_prior_bias


def build_unetr(config: SegmentationConfig) -> torch.nn.Module:
    from monai.networks.nets import UNETR

    x, y, z = config.patch_size
    u = config.unetr
    model = UNETR(in_channels=3, out_channels=2, img_size=(z, y, x), feature_size=u.feature_size,
                 hidden_size=u.hidden_size, mlp_dim=u.mlp_dim, num_heads=u.num_heads, dropout_rate=u.dropout_rate,
                 norm_name="instance", res_block=True, spatial_dims=3)
    # Prior initialisation (as for focal loss): start by predicting the tumour as rare as it
    # is, instead of everywhere; otherwise the first epochs are spent unlearning false positives.
    set_prior_bias(model.out.conv.conv.bias, config.foreground_prior)
    return model

