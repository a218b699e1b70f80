"""MONAI 3D ResNets with one logit, and their penultimate-layer features.

The features the fusion model takes are the input of the final fully connected layer (the
globally pooled output of the last block), read with a forward hook so the network itself
stays MONAI's. Grad-CAM looks at ``layer4``, the last convolutional block.
"""

from __future__ import annotations

import torch

from osteomet.mri.classifier.config import ResNetConfig

GRADCAM_LAYER = "layer4"
N_CHANNELS = 3  # high-b DWI, T2, ADC


class DropoutLinear(torch.nn.Linear):
    """The final layer with dropout on its input while training.

    A ``Linear`` subclass rather than a ``Sequential``, so the weights keep MONAI's names
    (``fc.weight``) and the features hook still reads the undropped pooled activations.
    """

    def __init__(self, linear: torch.nn.Linear, p: float):
        super().__init__(linear.in_features, linear.out_features, bias=linear.bias is not None)
        self.load_state_dict(linear.state_dict())
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(torch.nn.functional.dropout(x, self.p, self.training))


def build_resnet(depth: int, resnet: ResNetConfig) -> torch.nn.Module:
    """``monai.networks.nets.resnet<depth>``: 3 input channels, one bone-metastasis logit."""
    from monai.networks import nets

    factory = getattr(nets, f"resnet{depth}")
    model = factory(spatial_dims=3, n_input_channels=N_CHANNELS, num_classes=1, widen_factor=resnet.widen_factor,
                    conv1_t_size=resnet.conv1_t_size, conv1_t_stride=resnet.conv1_t_stride,
                    no_max_pool=resnet.no_max_pool, shortcut_type=resnet.shortcut_type)
    if resnet.dropout > 0:
        model.fc = DropoutLinear(model.fc, resnet.dropout)
    return model


def logits_and_features(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The logit (N) and the penultimate activations (N x F, the input of ``model.fc``) of a batch."""
    captured: list[torch.Tensor] = []
    handle = model.fc.register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0].detach()))
    try:
        logits = model(x)
    finally:
        handle.remove()
    return logits.reshape(-1), captured[0].flatten(1)
