"""Feature stability under mask perturbation: which radiomics features survive a one-voxel contour change.

A feature whose value moves when the tumour contour moves by one voxel (or from the UNETR
proposal to the radiologist's correction) describes the contour more than the tumour, and
would not reproduce in another reader's hands (Zwanenburg et al. 2019, Sci Rep 9:614). For
each perturbation the features are extracted again and compared with the unperturbed ones by
ICC(2,1) (two-way random, absolute agreement; :func:`osteomet.evaluation.icc.feature_icc`);
a feature's stability is its *lowest* ICC over the perturbations, and features below the
threshold (0.75 by default, "moderate" in Koo & Li 2016) are dropped before selection.

Erosion and dilation are by one voxel *in-plane* (a 3x3 square in each slice): bpMRI slices are
4 mm against sub-millimetre pixels, so a through-plane step would remove whole slices of a small
tumour rather than perturb its contour. A patient whose mask erodes to nothing is left out of
that perturbation (recorded as ``n`` per feature).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from osteomet.data.manifest import Manifest
from osteomet.errors import InputError

PERTURBATIONS = ("erode", "dilate")
#: Columns of the per-feature table besides one ``icc_<perturbation>`` per perturbation.
COLUMNS = ["feature", "class", "icc", "worst", "n"]


def perturb_mask(path: str | Path, kind: str, out: str | Path) -> Path | None:
    """The mask at ``path`` eroded or dilated by one voxel in-plane, written to ``out``; None if it erodes away."""
    import SimpleITK as sitk

    from osteomet.data.images import write_image
    from osteomet.data.label_masks import read_mask

    if kind not in PERTURBATIONS:
        raise InputError(f"unknown mask perturbation {kind!r}; use {', '.join(PERTURBATIONS)}")
    mask = read_mask(path)
    step = sitk.BinaryErode if kind == "erode" else sitk.BinaryDilate
    changed = step(mask, [1, 1, 0], sitk.sitkBall, 0, 1)
    if not sitk.GetArrayViewFromImage(changed).any():
        return None
    return write_image(sitk.Cast(changed, sitk.sitkUInt8), out)


def perturbed_manifest(manifest: Manifest, kind: str, folder: str | Path) -> Manifest:
    """``manifest`` restricted to patients with a mask, each mask replaced by its perturbed copy in ``folder``."""
    from osteomet.data.masks import redirect_masks

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    masks: dict[str, Path | None] = {}
    for record in manifest:
        if record.mask is not None:
            masks[record.patient_id] = perturb_mask(record.mask, kind, folder / f"{record.patient_id}.nii.gz")
    kept = [r for r in manifest.records if masks.get(r.patient_id) is not None]
    subset = Manifest(kind=manifest.kind, records=kept, path=manifest.path, warnings=list(manifest.warnings),
                      extra_columns=list(manifest.extra_columns))
    return redirect_masks(subset, {pid: masks[pid] for pid in subset.patient_ids}, f"masks: {kind} by one voxel")


def feature_columns(table: pd.DataFrame) -> list[str]:
    """Numeric feature columns of a feature table (not the id, error or pyradiomics diagnostics)."""
    return [c for c in table.columns if c not in ("patient_id", "error") and not str(c).startswith("diagnostics_")
            and pd.api.types.is_numeric_dtype(table[c])]


def stability_table(original: pd.DataFrame, perturbed: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """ICC(2,1) of every feature between ``original`` and each perturbed table (all indexed by patient).

    Returns ``feature, class, icc, worst, n, icc_<name>...``: ``icc`` is the lowest ICC over the
    perturbations (NaN when any is undefined, e.g. a feature constant over patients), ``worst``
    names that perturbation and ``n`` is the fewest patients any ICC rests on.
    """
    from osteomet.evaluation.icc import feature_icc
    from osteomet.radiomics.reproducibility import feature_class

    if not perturbed:
        raise InputError("feature stability needs at least one perturbation")
    columns = feature_columns(original.reset_index())
    per = {}
    for name, table in perturbed.items():
        result = feature_icc(original[columns], table[[c for c in columns if c in table.columns]])
        per[name] = result.set_index("feature")
    rows = []
    for column in columns:
        iccs = {name: float(r.loc[column, "icc"]) if column in r.index else math.nan for name, r in per.items()}
        ns = [int(r.loc[column, "n"]) if column in r.index else 0 for r in per.values()]
        defined = not any(math.isnan(v) for v in iccs.values())
        worst = min(iccs, key=lambda k: iccs[k]) if defined else next(k for k, v in iccs.items() if math.isnan(v))
        rows.append({"feature": column, "class": feature_class(column) or "other",
                     "icc": min(iccs.values()) if defined else math.nan, "worst": worst, "n": min(ns),
                     **{f"icc_{name}": v for name, v in iccs.items()}})
    return pd.DataFrame(rows, columns=COLUMNS + [f"icc_{name}" for name in perturbed])


def stable_features(per_feature: pd.DataFrame, threshold: float) -> list[str]:
    """Features whose lowest ICC reaches ``threshold`` (an undefined ICC is not evidence of stability)."""
    icc = per_feature["icc"].to_numpy(dtype=float)
    return [f for f, v in zip(per_feature["feature"], icc) if not np.isnan(v) and v >= threshold]


def drop_unstable(table: pd.DataFrame, keep: Sequence[str], *, features: Sequence[str]) -> pd.DataFrame:
    """``table`` without the feature columns in ``features`` that are not in ``keep`` (other columns stay)."""
    keep = set(keep)
    return table.drop(columns=[c for c in features if c not in keep and c in table.columns])
