"""CT lesion segmentation: MONAI 2D UNet, residual UNet and attention UNet, scored per patient in 3D."""
