"""The radiologist review loop: UNETR proposals out to 3D Slicer, refined masks back in.

The study's masks are semi-automatic: the UNETR proposes a tumour mask, a radiologist checks
and corrects it in 3D Slicer (or ITK-SNAP), and only then do radiomics and the classifiers
use it. This module is the hand-over in both directions.

* :func:`export_review` writes, per patient, the three sequences on the T2 grid (so they open
  aligned in any viewer) and the proposal as a genuine Slicer segmentation
  (``<patient>_auto.seg.nrrd``), plus a review sheet and a README. Nothing a radiologist may
  have touched (a reviewed file, the sheet, an auto segmentation saved over in Slicer) is
  ever overwritten.
* :func:`import_review` reads the refined files back, checks them against each patient's T2
  grid, stores them as ``SEGDIR/reviewed/<patient>.nii.gz`` next to (never over) the auto
  masks, and records who changed what, when and by how much in ``SEGDIR/provenance.json``.

Which mask a later stage uses is decided only by :mod:`osteomet.data.masks`.
"""

from osteomet.mri.review.common import README_NAME, REVIEW_DIR, ReviewError, reviewed_candidates
from osteomet.mri.review.export import export_review
from osteomet.mri.review.importer import IMPORT_COLUMNS, import_review
from osteomet.mri.review.seg_nrrd import (
                                          SEGMENT_ID,
                                          SEGMENT_NAME,
                                          SlicerSegment,
                                          read_reviewed_mask,
                                          read_seg_nrrd,
                                          slicer_segments,
                                          write_seg_nrrd,
)

__all__ = ["IMPORT_COLUMNS", "README_NAME", "REVIEW_DIR", "SEGMENT_ID", "SEGMENT_NAME", "ReviewError", "SlicerSegment",
           "export_review", "import_review", "read_reviewed_mask", "read_seg_nrrd", "reviewed_candidates",
           "slicer_segments", "write_seg_nrrd"]
