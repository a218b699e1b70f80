"""nnU-Net v2 for CT lesion segmentation: raw dataset export, nnU-Net's own planning/training/inference, import.

The ``nnunetv2`` package is an optional extra (see the README for its install recipe);
only :mod:`osteomet.ct.nnunet.run` needs it, and only inside a subprocess, so export and
import work without it.
"""

from osteomet.ct.nnunet.layout import NnunetLayout

__all__ = ["NnunetLayout"]
