"""Per-case overlap metrics: the one implementation lives in :mod:`osteomet.evaluation.segmentation`."""

from osteomet.evaluation.segmentation import overlap

__all__ = ["overlap"]
