"""Per-lesion analysis of one CT lesion mask: lesions (:mod:`osteomet.ct.lesions.labels`), bone, diffuse/focal, clusters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import SimpleITK as sitk

from osteomet.ct.lesions.bones import assign_bones, validate_bone_map
from osteomet.ct.lesions.clusters import assign_clusters
from osteomet.ct.lesions.labels import LesionLabels, label_lesions, lesion_geometry
from osteomet.data.geometry import check_same_geometry
from osteomet.errors import InputError


@dataclass
class LesionAnalysis:
    """Lesions of one mask: label array, boxes and the per-lesion table (one row per lesion)."""

    lesions: LesionLabels
    table: pd.DataFrame
    bones_present: list[int] = field(default_factory=list)
    patient_id: str | None = None

    def summary(self) -> dict[str, object]:
        """Per-patient counts: lesions, volume, clusters, diffuse/focal, weight-bearing, per bone group."""
        from osteomet.data.totalsegmentator import BONE_GROUPS

        t = self.table
        out: dict[str, object] = {"patient_id": self.patient_id, "n_lesions": int(len(t)),
                                  "total_volume_ml": float(t["volume_ml"].sum()) if len(t) else 0.0}
        out["n_clusters"] = int(t["cluster_id"].nunique()) if "cluster_id" in t and len(t) else 0
        if "kind" in t:
            for kind in ("diffuse", "focal"):
                out[f"n_{kind}"] = int((t["kind"] == kind).sum())
        if "bone_group" in t:
            out["n_weight_bearing"] = int((t["weight_bearing"] == True).sum())  # noqa: E712 (object column of True/False/None)
            out["n_outside_bone"] = int((t["bone_status"] == "outside_bone").sum())
            out["n_bone_tie"] = int((t["bone_status"] == "tie").sum())
            for group in BONE_GROUPS:
                out[f"n_{group}"] = int((t["bone_group"] == group).sum())
        return out


def analyse_lesions(mask: sitk.Image, bones: sitk.Image | None = None, ct: sitk.Image | None = None, *,
                    diffuse_fraction: float = 0.5, cluster_gap: float = 10.0, cluster_unit: str = "slices",
                    patient_id: str | None = None, names: Sequence[str] = ("mask", "bone map", "CT")) -> LesionAnalysis:
    """Lesions of ``mask`` with geometry, HU (with ``ct``), bone, diffuse/focal (with ``bones``) and clusters.

    The three images must share one grid (a :class:`GeometryMismatchError` names what
    differs). ``diffuse_fraction`` and the cluster settings are documented in
    :mod:`osteomet.ct.lesions.bones` and :mod:`osteomet.ct.lesions.clusters`.
    """
    mask_name, bones_name, ct_name = names
    who = f"patient {patient_id!r}: " if patient_id else ""
    if bones is not None:
        check_same_geometry(bones, mask, name=f"{who}{bones_name}", reference_name=mask_name)
    if ct is not None:
        check_same_geometry(ct, mask, name=f"{who}{ct_name}", reference_name=mask_name)
    mask_array = sitk.GetArrayViewFromImage(mask)
    values = np.unique(mask_array[mask_array != 0])
    if values.size and not np.array_equal(values, [1]):
        raise InputError(f"{who}{mask_name}: lesion mask is not binary (values {values[:6].tolist()})")
    lesions = label_lesions(mask_array != 0)
    ct_array = sitk.GetArrayViewFromImage(ct) if ct is not None else None
    table = lesion_geometry(lesions, mask, ct_array)
    bones_present: list[int] = []
    if bones is not None:
        bone_array = sitk.GetArrayViewFromImage(bones)
        bones_present = validate_bone_map(bone_array, name=f"{who}{bones_name}")
        table = table.merge(assign_bones(lesions, bone_array, diffuse_fraction=diffuse_fraction),
                            on="lesion_id", how="left")
    spacing_z = float(mask.GetSpacing()[2])
    table["cluster_id"] = assign_clusters(table["slice_first"].to_numpy(), table["slice_last"].to_numpy(),
                                          max_gap=cluster_gap, unit=cluster_unit, slice_spacing_mm=spacing_z)
    if patient_id is not None:
        table.insert(0, "patient_id", patient_id)
    return LesionAnalysis(lesions, table, bones_present, patient_id)
