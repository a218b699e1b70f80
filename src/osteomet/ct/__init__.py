"""CT osseous lesions: slice detection, lesion segmentation (MONAI, nnU-Net v2), per-lesion analysis."""
