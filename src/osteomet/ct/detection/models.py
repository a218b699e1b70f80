"""The three MONAI 2D slice classifiers (one logit: lesion in the slice) and their Grad-CAM layers."""

from __future__ import annotations

import torch

from osteomet.errors import InputError

#: Layer whose activations Grad-CAM weights: the last feature map at stride 8 of each network. The
#: classifiers see bone tiles (48 pixels in the tiny preset, 128 in the default), where the last
#: convolutional map (stride 32) is 1-4 pixels wide and its Grad-CAM cannot point at anything; at
#: stride 8 a tile's map is 6-16 pixels wide, fine enough to say where in the tile the evidence is.
GRADCAM_LAYERS = {
    "efficientnet-b0": "_blocks.2",
    "resnet34": "layer2",
    "densenet121": "features.denseblock2",
}


#: EfficientNet-B0's stages (MONAI's ``EfficientNetBN`` block strings), so that a narrower B0 can be built.
_B0_BLOCKS = ["r1_k3_s11_e1_i32_o16_se0.25", "r2_k3_s22_e6_i16_o24_se0.25", "r2_k5_s22_e6_i24_o40_se0.25",
              "r3_k3_s22_e6_i40_o80_se0.25", "r3_k5_s11_e6_i80_o112_se0.25", "r4_k5_s22_e6_i112_o192_se0.25",
              "r1_k3_s11_e6_i192_o320_se0.25"]


def build_classifier(architecture: str, in_channels: int = 1, width: float = 1.0) -> torch.nn.Module:
    """A randomly initialised 2D classifier with a single logit output.

    ``in_channels``: the slice and its neighbours. ``width`` scales every layer's channels
    (1.0 is the published network; the same depth and topology at a fraction of the cost
    for CPU presets). ResNet34 uses the ImageNet stem (7x7 convolution with stride 2 and max
    pooling), as the published ResNet34 does; MONAI's default stride-1 stem would quadruple
    its cost. EfficientNet's batch-norm momentum is 0.1 instead of MONAI's 0.01: with 0.01
    the running statistics that evaluation uses lag hundreds of batches behind the weights,
    so a short training run is evaluated with the statistics of its first epochs. Its final
    linear layer starts at zero (every first logit 0): MONAI draws it from U(-1, 1) for one
    output, which over 1280 (320 at quarter width) features gives first logits of about +-10;
    the starting loss of 1.4 then took most of a short schedule to undo (training loss after
    400 steps 0.74 against 0.41 from zero, where ResNet34 is at 0.31).
    """
    from monai.networks.nets import DenseNet, EfficientNet, ResNet

    if architecture == "efficientnet-b0":
        net = EfficientNet(_B0_BLOCKS, spatial_dims=2, in_channels=in_channels, num_classes=1, width_coefficient=width,
                           depth_coefficient=1.0, dropout_rate=0.2, image_size=224, drop_connect_rate=0.2,
                           norm=("batch", {"eps": 1e-3, "momentum": 0.1}))
        torch.nn.init.zeros_(net._fc.weight)
        torch.nn.init.zeros_(net._fc.bias)
        return net
    if architecture == "resnet34":
        return ResNet("basic", [3, 4, 6, 3], [64, 128, 256, 512], spatial_dims=2, n_input_channels=in_channels,
                      num_classes=1, conv1_t_stride=2, widen_factor=width)
    if architecture == "densenet121":
        return DenseNet(spatial_dims=2, in_channels=in_channels, out_channels=1, init_features=max(8, int(64 * width)),
                        growth_rate=max(4, int(32 * width)), block_config=(6, 12, 24, 16))
    raise InputError(f"unknown detection architecture {architecture!r}; choose one of {', '.join(GRADCAM_LAYERS)}")
