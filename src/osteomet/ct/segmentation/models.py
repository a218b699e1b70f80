"""The three MONAI 2D segmentation networks (2 output classes: background, lesion)."""

from __future__ import annotations

import torch

from osteomet.ct.segmentation.config import CTSegmentationConfig
from osteomet.errors import InputError
from osteomet.utils.torch import set_prior_bias

ARCHITECTURES = ("unet", "resunet", "attention_unet")


def build_segmenter(architecture: str, config: CTSegmentationConfig) -> torch.nn.Module:
    """Plain UNet (no residual units), residual UNet (2 residual units per block) or AttentionUnet.

    The output bias starts at the lesion prior (as for focal loss), so the first epochs are
    not spent unlearning lesion everywhere.
    """
    from monai.networks.nets import AttentionUnet, UNet

    config = config.for_architecture(architecture)
    common = dict(spatial_dims=2, in_channels=config.in_channels, out_channels=2, channels=config.channels, strides=config.strides)
    if architecture == "unet":
        model = UNet(**common, num_res_units=0)
    elif architecture == "resunet":
        model = UNet(**common, num_res_units=2)
    elif architecture == "attention_unet":
        model = AttentionUnet(**common)
    else:
        raise InputError(f"unknown segmentation architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
    last = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))
            and m.out_channels == 2][-1]
    if last.bias is not None:
        set_prior_bias(last.bias, config.foreground_prior)
    return model
