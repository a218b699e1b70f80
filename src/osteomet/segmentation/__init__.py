"""Tumour segmentation: UNETR training and inference, and the radiologist review loop."""
