"""The volume file formats osteomet reads and writes, by suffix: answerable without importing an imaging library
(the importers decide names long before they read a voxel)."""

from __future__ import annotations

#: Suffixes of the volume files osteomet reads (besides DICOM series folders).
VOLUME_SUFFIXES = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".seg.nrrd")
#: The formats the importers can write a volume in (``--convert``), and the suffix of each.
CONVERSIONS = {"nifti": ".nii.gz", "mha": ".mha"}

__all__ = ["CONVERSIONS", "VOLUME_SUFFIXES"]
