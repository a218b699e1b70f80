"""Preprocessing: channels on the T2 grid, z-scored and clipped; segmentation grid; tumour ROI."""
