"""bpMRI: preprocessing, UNETR segmentation, the review loop and the 3D-ResNet classifier."""
