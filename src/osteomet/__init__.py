"""osteomet: bone-metastasis imaging AI for prostate cancer (bpMRI and CT)."""

__version__ = "0.1.0"
