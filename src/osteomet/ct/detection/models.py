"""The three MONAI 2D slice classifiers (one logit: lesion in the slice) and their Grad-CAM layers."""

from __future__ import annotations

import torch

from osteomet.errors import InputError

#: Layer whose activations Grad-CAM weights: the last convolutional feature map of each network.
GRADCAM_LAYERS = {
    "efficientnet-b0": "_conv_head",
    "resnet34": "layer4",
    "densenet121": "class_layers.relu",
}


def build_classifier(architecture: str) -> torch.nn.Module:
    """A randomly initialised 1-channel 2D classifier with a single logit output.

    ResNet34 uses the ImageNet stem (7x7 convolution with stride 2 and max pooling), as the
    published ResNet34 does; MONAI's default stride-1 stem would quadruple its cost.
    """
    from monai.networks.nets import DenseNet121, EfficientNetBN, resnet34

    if architecture == "efficientnet-b0":
        return EfficientNetBN("efficientnet-b0", pretrained=False, spatial_dims=2, in_channels=1, num_classes=1)
    if architecture == "resnet34":
        return resnet34(spatial_dims=2, n_input_channels=1, num_classes=1, conv1_t_stride=2)
    if architecture == "densenet121":
        return DenseNet121(spatial_dims=2, in_channels=1, out_channels=1)
    raise InputError(f"unknown detection architecture {architecture!r}; choose one of {', '.join(GRADCAM_LAYERS)}")
