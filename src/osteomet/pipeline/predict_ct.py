"""``osteomet predict ct``: one new CT through a finished CT study's models.

The *bundle* is the run directory of ``osteomet run ct``: the slice detectors (each with the
decision threshold it fixed on its validation slices) and the lesion segmenters (each with the
post-processing it chose on validation), as pickle-free checkpoints. The new CT goes through the
same functions as the study's patients: its slices are cached, every detector scores them and
flags the slices at or above its threshold, the chosen segmenter (default: the one with the best
validation Dice) draws the lesion mask in the CT's own geometry, and the per-lesion analysis
describes each lesion (volume, bone and bone group from a TotalSegmentator map when one is given,
weight-bearing, diffuse or focal, cluster, mean HU).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from osteomet.errors import InputError, MissingInputError
from osteomet.layout import CHECKPOINTS, HISTORY, LESIONS, MANIFEST, RESULT, SLICE_SCORES, RunLayout, open_run_dir
from osteomet.utils.files import write_json_atomic, write_text_atomic


def trained(model_dir: Path, task: str) -> list[str]:
    """The task's trained architectures in a `run ct` folder (none when the study left the task out)."""
    if not model_dir.is_dir():
        return []
    if task == "detection":
        from osteomet.ct.detection.infer import trained_architectures
    else:
        from osteomet.ct.segmentation.infer import trained_architectures
    return trained_architectures(model_dir)


def best_segmenter(model_dir: Path) -> str:
    """The segmenter with the highest validation Dice of its kept epoch (ties: alphabetical)."""
    scores = {}
    for architecture in trained(model_dir, "segmentation"):
        history = model_dir / architecture / HISTORY
        table = pd.read_csv(history) if history.is_file() else pd.DataFrame()
        scores[architecture] = float(table["val_dice"].dropna().iloc[-1]) if "val_dice" in table and \
            table["val_dice"].notna().any() else float("-inf")
    if not scores:
        raise MissingInputError(f"{model_dir}: no trained segmenter (no <architecture>/{CHECKPOINTS}/best.pt); run "
                                f"`osteomet run ct` first")
    return max(sorted(scores), key=lambda a: scores[a])


def predict_ct(run: str | Path, out: str | Path, *, ct: str | Path, bones: str | Path | None = None,
               patient_id: str = "patient", segmenter: str | None = None, series_uid: str | None = None,
               device: str | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Slice scores and flagged slices of every detector, the lesion mask and the per-lesion table of one CT."""
    from osteomet.ct.detection.infer import predict_detection
    from osteomet.ct.lesions.cohort import LesionSettings
    from osteomet.ct.segmentation.infer import predict_segmentation
    from osteomet.data.manifest import read_manifest, write_manifest
    from osteomet.pipeline.ct_lesions import analyse_lesion_files
    from osteomet.stage import refuse_overwriting_inputs

    layout = RunLayout(Path(run))
    detectors_dir, segmenters_dir = layout.ct_detection / "model", layout.ct_segmentation / "model"
    detectors, segmenters = trained(detectors_dir, "detection"), trained(segmenters_dir, "segmentation")
    if not detectors and not segmenters:
        raise MissingInputError(f"{run}: no trained CT detector or segmenter (ct/detection/model, "
                                f"ct/segmentation/model); give the run directory of `osteomet run ct`")
    if segmenter is not None and segmenter not in segmenters:
        raise InputError(f"--segmenter {segmenter}: not trained in {segmenters_dir} (trained: "
                         f"{', '.join(segmenters) or 'none'})")
    ct, bones = Path(ct), Path(bones) if bones is not None else None
    for name, path in (("--ct", ct), ("--bones", bones)):
        if path is not None and not path.exists():
            raise MissingInputError(f"{name} {path}: no such file or DICOM folder")
    out = Path(out)
    refuse_overwriting_inputs([out], [p for p in (ct, bones, layout.root) if p is not None])
    open_run_dir(out, kind="predict-ct")
    work = out / "work"
    work.mkdir(exist_ok=True)
    row = {"patient_id": patient_id, "ct": str(ct.resolve()), "bone_map": str(bones.resolve()) if bones else None,
           "ct_series_uid": series_uid}
    manifest = write_manifest(pd.DataFrame([row]), work / MANIFEST, kind="ct", overwrite=True)
    cohort = read_manifest(manifest, kind="ct")
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    result: dict[str, Any] = {"patient_id": patient_id, "ct": str(ct), "bone_map": str(bones) if bones else None}

    if detectors:
        tick = time.perf_counter()
        predict_detection(cohort, detectors_dir, out / "detection", device=device, gradcam=False, n_resamples=100)
        flagged = {}
        for architecture in detectors:
            scores = pd.read_csv(out / "detection" / architecture / SLICE_SCORES)
            flagged[architecture] = sorted(int(s) for s in scores.loc[scores["predicted"] == 1, "slice"])
        result["flagged_slices"] = flagged
        seconds["detection"] = round(time.perf_counter() - tick, 2)
        log(f"detection: {', '.join(f'{a} {len(s)} slice(s)' for a, s in flagged.items())} flagged "
            f"({seconds['detection']:.1f} s)")
    if segmenters:
        tick = time.perf_counter()
        chosen = segmenter or best_segmenter(segmenters_dir)
        predict_segmentation(cohort, segmenters_dir, out / "segmentation", architectures=[chosen], device=device)
        mask = out / "segmentation" / chosen / "masks" / f"{patient_id}.nii.gz"
        _, analysis = analyse_lesion_files(mask, bones, out / "lesions", settings=LesionSettings(), ct=ct,
                                           patient_id=patient_id)
        lesions = pd.read_csv(out / "lesions" / LESIONS) if (out / "lesions" / LESIONS).is_file() else pd.DataFrame()
        if len(lesions):
            import SimpleITK as sitk

            from osteomet.ct.lesions.overlays import lesion_overlays
            from osteomet.data.images import read_image

            result["overlays"] = [str(p) for p in lesion_overlays(read_image(ct, series_uid=series_uid),
                                                                  sitk.ReadImage(str(mask)), lesions,
                                                                  out / "overlays")]
        from osteomet.data.dicom_seg import seg_beside

        seg_file, result["dicom_seg_note"] = seg_beside(mask, ct, out / "lesions.seg.dcm", label="bone lesion",
                                                         series_uid=series_uid)
        result["dicom_seg"] = str(seg_file) if seg_file else None
        log(result["dicom_seg_note"])
        result.update(segmenter=chosen, mask=str(mask), lesions=int(len(lesions)),
                      lesion_volume_ml=round(float(lesions["volume_ml"].sum()), 3) if "volume_ml" in lesions else 0.0,
                      bone_identity=bones is not None)
        seconds["segmentation"] = round(time.perf_counter() - tick, 2)
        log(f"segmentation ({chosen}): {len(lesions)} lesion(s) ({seconds['segmentation']:.1f} s)"
            + ("" if bones else "; no bone map given, so bone identity is unavailable"))
    seconds["total"] = round(time.perf_counter() - started, 2)
    result["seconds"] = seconds
    write_json_atomic(out / RESULT, result)
    write_text_atomic(out / "result.md", _markdown(result, out))
    return result


def _markdown(result: dict[str, Any], out: Path) -> str:
    lines = [f"# CT of {result['patient_id']}", ""]
    for architecture, slices in (result.get("flagged_slices") or {}).items():
        lines.append(f"- detector {architecture}: {len(slices)} slice(s) flagged"
                     + (f" ({', '.join(map(str, slices[:20]))}{' ...' if len(slices) > 20 else ''})" if slices else ""))
    if "segmenter" in result:
        lines.append(f"- segmenter {result['segmenter']}: {result['lesions']} lesion(s), "
                     f"{result['lesion_volume_ml']} mL in all; mask: `{Path(result['mask']).relative_to(out)}`")
        lines.append(f"- {result['dicom_seg_note']}")
        if result.get("overlays"):
            lines.append(f"- overlays (bone window, lesion outlined): {len(result['overlays'])} PNG in `overlays/`")
        if not result["bone_identity"]:
            lines.append("- no bone map given (--bones): bone identity and weight-bearing are unavailable")
        table = out / "lesions" / LESIONS
        if table.is_file():
            frame = pd.read_csv(table)
            shown = [c for c in ("lesion_id", "volume_ml", "bone_name", "bone_group", "weight_bearing", "kind",
                                 "cluster", "mean_hu") if c in frame]
            if shown and len(frame):
                lines += ["", "| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
                lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in frame[shown].head(30).itertuples(
                    index=False)]
    return "\n".join(lines) + "\n"
