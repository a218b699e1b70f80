"""MONAI UNETR tumour segmentation (3 channels: high-b DWI, T2, ADC) on the preprocessed grid."""
