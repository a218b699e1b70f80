"""Every patient counted: automatic-mask QC, the study cohort that follows from it, and the patient flow.

Three stages of `run mri`:

- ``mask-qc`` (``segmentation/masks/qc/``) checks every UNETR mask
  (:func:`osteomet.mri.segmentation.qc.check_mask`) and decides, per the study's
  ``segmentation.on_flagged``, what each flagged patient gets: a radiologist's review (the study
  stops until the reviewed masks are imported), the manifest's own mask, or exclusion. The
  mask resolver (:mod:`osteomet.data.masks`) reads these decisions, so every later stage uses
  the same mask for a patient.
- ``study-cohort`` (``cohort/``) is the study manifest without the excluded patients, and
  ``exclusions.csv`` with each one's reason: every model trains and scores on this one set.
- ``patient-flow`` (``flow/``) follows each patient from the manifest to the evaluation: excluded
  (where, why), scored by each model, evaluated or not (why). With ``evaluation.patients:
  common`` every model is evaluated on the patients all models scored, so the AUC table and the
  DeLong tests use one patient set per cohort; the flow figure draws the counts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from osteomet.data.manifest import read_manifest
from osteomet.errors import InputError
from osteomet.layout import EXCLUSIONS, FLOW_FIGURE, FLOW_RECORD, FLOW_TABLE, MANIFEST, QC_TABLE
from osteomet.stage import Stage, StageOutcome
from osteomet.utils.files import write_json_atomic, write_text_atomic

QC_STAGE = "mask-qc"
COHORT_STAGE = "study-cohort"
FLOW_STAGE = "patient-flow"
#: What a flagged automatic mask gets (``segmentation.on_flagged``).
ON_FLAGGED = ("review", "manifest", "exclude")


class ReviewRequired(InputError):
    """Flagged automatic masks wait for a radiologist: the study stops (exit code 3) until they are imported."""

    exit_code = 3


def decide(flagged: bool, reviewed: bool, has_manifest_mask: bool, on_flagged: str) -> str:
    """``use`` (the automatic mask), ``reviewed``, ``review`` (waiting), ``manifest`` or ``exclude``."""
    if reviewed:
        return "reviewed"
    if not flagged:
        return "use"
    if on_flagged == "review":
        return "review"
    if on_flagged == "manifest" and has_manifest_mask:
        return "manifest"
    return "exclude"


def qc_masks(manifest: str | Path, segdir: str | Path, settings: Any, *, on_flagged: str) -> tuple[StageOutcome, pd.DataFrame]:
    """QC every automatic mask in ``segdir/auto`` and record each patient's decision in ``segdir/qc/qc.csv``."""
    import SimpleITK as sitk

    from osteomet.data.masks import auto_mask_path, provenance_path, qc_folder, reviewed_mask_path
    from osteomet.mri.segmentation.qc import check_mask
    from osteomet.utils.progress import progress_bar

    if on_flagged not in ON_FLAGGED:
        raise InputError(f"segmentation.on_flagged: {on_flagged!r} is not one of {', '.join(ON_FLAGGED)}")
    cohort = read_manifest(manifest, kind="mri")
    segdir = Path(segdir)
    autos = {r.patient_id: auto_mask_path(segdir, r.patient_id) for r in cohort}
    reviewed = {r.patient_id: reviewed_mask_path(segdir, r.patient_id) for r in cohort}
    out = qc_folder(segdir)
    stage = Stage(QC_STAGE, out, settings={"qc": settings.model_dump(mode="json"), "on_flagged": on_flagged},
                  inputs={"manifest": manifest, "auto": [p for p in autos.values() if p.is_file()],
                          "reviewed": [p for p in reviewed.values() if p.is_file()],
                          "provenance": provenance_path(segdir)}, outputs=(QC_TABLE,))

    def work() -> dict[str, Any]:
        rows = []
        with progress_bar("mask qc", len(cohort), transient=True) as advance:
            for record in cohort:
                pid = record.patient_id
                row: dict[str, Any] = {"patient_id": pid, "split": record.split, "centre": record.centre}
                if autos[pid].is_file():
                    row.update(check_mask(sitk.ReadImage(str(autos[pid])), settings).row())
                else:
                    row.update(volume_ml=None, components=None, distance_mm=None, touches_border=None, flagged=True,
                               reasons="no automatic mask (the patient was not segmented)")
                row["reviewed"] = reviewed[pid].is_file()
                row["action"] = decide(bool(row["flagged"]), row["reviewed"], record.mask is not None, on_flagged)
                rows.append(row)
                advance()
        table = pd.DataFrame(rows)
        write_text_atomic(out / QC_TABLE, table.to_csv(index=False))
        return {"flagged": int(table["flagged"].sum()),
                **{action: int((table["action"] == action).sum()) for action in ("review", "manifest", "exclude")}}

    outcome = stage.run(work)
    return outcome, pd.read_csv(out / QC_TABLE, dtype={"patient_id": str})


def require_review(manifest: str | Path, segdir: str | Path, qc: pd.DataFrame, *, command: str) -> None:
    """With flagged masks waiting for review: export exactly those patients for 3D Slicer and stop the study."""
    from osteomet.data.manifest import Manifest
    from osteomet.mri.review import export_review

    waiting = qc[qc["action"] == "review"]
    if waiting.empty:
        return
    cohort = read_manifest(manifest, kind="mri")
    ids = set(waiting["patient_id"])
    flagged = Manifest(kind="mri", records=[r for r in cohort if r.patient_id in ids], path=cohort.path)
    folder = export_review(flagged, segdir, log=lambda _line: None)
    listing = "; ".join(f"{row.patient_id}: {row.reasons}" for row in waiting.head(8).itertuples())
    more = f"; and {len(waiting) - 8} more" if len(waiting) > 8 else ""
    raise ReviewRequired(
        f"{len(waiting)} automatic mask(s) need a radiologist's review before the study goes on ({listing}{more}). "
        f"They are exported to {folder} (T2, high-b, ADC and the mask as a 3D Slicer segmentation, with "
        f"review_sheet.csv). Refine them in 3D Slicer, import them with `osteomet segment import-review -m "
        f"{manifest} -s {segdir} --reviewer NAME`, then rerun `{command}`. Or set segmentation.on_flagged to "
        f"manifest (use the manifest's masks) or exclude (leave them out of every model, recorded)")


def study_cohort(manifest: str | Path, out: str | Path, qc: Path | None) -> tuple[StageOutcome, pd.DataFrame]:
    """The manifest every model uses: the study's without the patients the mask QC excluded (with reasons)."""
    from osteomet.data.manifest import with_absolute_paths, write_manifest

    out = Path(out)
    cohort = read_manifest(manifest, kind="mri")
    stage = Stage(COHORT_STAGE, out, inputs={"manifest": manifest, "qc": qc}, outputs=(MANIFEST, EXCLUSIONS))

    def work() -> dict[str, Any]:
        frame = cohort.to_frame()
        excluded = pd.DataFrame(columns=["patient_id", "split", "centre", "label", "stage", "reason"])
        if qc is not None:
            table = pd.read_csv(qc, dtype={"patient_id": str})
            dropped = table[table["action"] == "exclude"]
            meta = frame.set_index("patient_id")
            excluded = pd.DataFrame({
                "patient_id": dropped["patient_id"], "split": dropped["patient_id"].map(meta["split"]),
                "centre": dropped["patient_id"].map(meta["centre"]), "label": dropped["patient_id"].map(meta["label"]),
                "stage": "mask qc", "reason": [f"automatic mask flagged: {r}" for r in dropped["reasons"]]})
        kept = frame[~frame["patient_id"].isin(set(excluded["patient_id"]))]
        if len(excluded):
            from osteomet.data.study_checks import check_study_labels

            try:
                check_study_labels(kept, source=f"{manifest} without the {len(excluded)} patient(s) the mask QC excluded")
            except InputError as exc:
                raise InputError(f"{exc}; or review their masks instead (segmentation.on_flagged: review)") from None
        write_manifest(with_absolute_paths(kept, "mri"), out / MANIFEST, kind="mri", overwrite=True)
        write_text_atomic(out / EXCLUSIONS, excluded.to_csv(index=False))
        return {"patients": len(kept), "excluded": len(excluded)}

    outcome = stage.run(work)
    return outcome, pd.read_csv(out / EXCLUSIONS, dtype={"patient_id": str})


def _not_scored_reasons(model: str, layout: Any) -> dict[str, str]:
    """Why a model has no probability for a patient, where a stage recorded it."""
    from osteomet.layout import EXTRACTION_LOG, INDEX

    reasons: dict[str, str] = {}
    if model in ("radiomics", "fusion"):
        log = layout.radiomics / EXTRACTION_LOG
        if log.is_file():
            table = pd.read_csv(log, dtype={"patient_id": str})
            for row in table[table["status"] == "failed"].itertuples():
                reasons[row.patient_id] = f"radiomics extraction failed: {row.error}"
    if model in ("deep", "fusion"):
        roi = layout.roi if (layout.roi / INDEX).is_file() else layout.preprocess
        index = roi / INDEX
        if index.is_file():
            table = pd.read_csv(index, dtype={"patient_id": str})
            for row in table.itertuples():
                if row.status == "failed":
                    reasons.setdefault(row.patient_id, f"no ROI crop: {row.error}")
                elif not bool(row.has_mask):
                    reasons.setdefault(row.patient_id, "no ROI crop: no tumour mask")
    return reasons


def patient_flow(manifest: str | Path, cohort_manifest: str | Path, exclusions: Path | None,
                 predictions: Mapping[str, Path], out: str | Path, layout: Any, *,
                 patients: str = "common") -> tuple[StageOutcome, pd.DataFrame]:
    """One row per manifest patient: excluded or not (why), scored by each model, evaluated or not (why)."""
    out = Path(out)
    stage = Stage(FLOW_STAGE, out, settings={"patients": patients, "models": list(predictions)},
                  inputs={"manifest": manifest, "cohort": cohort_manifest, "exclusions": exclusions,
                          "predictions": list(predictions.values())},
                  outputs=(FLOW_TABLE, FLOW_RECORD))

    def work() -> dict[str, Any]:
        from osteomet.models.predictions import read_predictions

        frame = read_manifest(manifest, kind="mri", check_files=False).to_frame()
        flow = frame[["patient_id", "split", "centre", "label"]].copy()
        excluded = pd.read_csv(exclusions, dtype={"patient_id": str}) if exclusions is not None else None
        reason = excluded.set_index("patient_id")["reason"] if excluded is not None and len(excluded) else pd.Series(dtype=str)
        flow["excluded"] = flow["patient_id"].isin(reason.index)
        flow["excluded_reason"] = flow["patient_id"].map(reason)
        why_not: dict[str, list[str]] = {}
        for model, path in predictions.items():
            table = read_predictions(path, allow_missing=True)
            scored = set(table.loc[table["prob"].notna(), "patient_id"])
            flow[f"scored_{model}"] = flow["patient_id"].isin(scored) & ~flow["excluded"]
            reasons = _not_scored_reasons(model, layout)
            for pid in flow.loc[~flow[f"scored_{model}"] & ~flow["excluded"], "patient_id"]:
                why_not.setdefault(pid, []).append(f"not scored by {model}"
                                                   + (f" ({reasons[pid]})" if pid in reasons else ""))
        scored_all = flow[[f"scored_{m}" for m in predictions]].all(axis=1)
        flow["evaluated"] = scored_all if patients == "common" else ~flow["excluded"]
        flow["not_evaluated_reason"] = [None if ok or ex else "; ".join(why_not.get(pid, ["not scored"]))
                                        for pid, ok, ex in zip(flow["patient_id"], flow["evaluated"], flow["excluded"])]
        write_text_atomic(out / FLOW_TABLE, flow.to_csv(index=False))
        record = flow_counts(flow, list(predictions), patients)
        write_json_atomic(out / FLOW_RECORD, record)
        plot_flow(record, out / FLOW_FIGURE)
        return {"evaluated": int(flow["evaluated"].sum()), "excluded": int(flow["excluded"].sum())}

    outcome = stage.run(work)
    return outcome, pd.read_csv(out / FLOW_TABLE, dtype={"patient_id": str})


def flow_counts(flow: pd.DataFrame, models: Iterable[str], patients: str) -> dict[str, Any]:
    """The counts the flow figure, ``summary.json`` and the checklist give."""
    models = list(models)
    by_split = {}
    for split, part in flow.groupby("split", sort=False):
        kept = part[~part["excluded"]]
        by_split[str(split)] = {
            "patients": len(part), "excluded": int(part["excluded"].sum()),
            "centres": {str(c): int(n) for c, n in kept["centre"].fillna("unknown").value_counts().sort_index().items()},
            "scored": {m: int(part[f"scored_{m}"].sum()) for m in models},
            "evaluated": int(part["evaluated"].sum()),
            "evaluated_with_bm": int((part["evaluated"] & (part["label"] == 1)).sum()),
            "not_evaluated": int((~part["evaluated"] & ~part["excluded"]).sum())}
    reasons = flow.loc[flow["excluded"], "excluded_reason"].fillna("").map(_reason_kind).value_counts()
    return {"manifest": len(flow), "excluded": int(flow["excluded"].sum()),
            "excluded_reasons": {str(k): int(v) for k, v in reasons.items()},
            "analysed": int((~flow["excluded"]).sum()), "evaluated": int(flow["evaluated"].sum()),
            "evaluation_patients": patients, "models": models, "splits": by_split}


def _reason_kind(reason: str) -> str:
    """A reason shortened to its kind for the figure ("automatic mask flagged: empty")."""
    head, _, detail = reason.partition(": ")
    kind = detail.split(";")[0].split(":")[0].split(",")[0].strip()
    kind = kind.split(" (")[0]
    if kind and kind[0].isdigit():  # "0.02 mL, below ..." -> "below the minimum volume"
        kind = "below the minimum volume" if "mL" in kind or "below" in detail else kind
    return f"{head}: {kind}" if kind else head


SPLIT_ORDER = ("train", "val", "test", "external")


def plot_flow(record: dict[str, Any], path: Path) -> Path:
    """The patient-flow diagram (CONSORT-like): manifest -> excluded -> per split and centre -> evaluated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from osteomet.utils.files import atomic_path

    splits = [s for s in SPLIT_ORDER if s in record["splits"]] + \
        [s for s in record["splits"] if s not in SPLIT_ORDER]
    width = max(8.0, 2.6 * len(splits))
    fig, ax = plt.subplots(figsize=(width, 6.2))
    ax.set_xlim(0, width)
    ax.set_ylim(0, 6.2)
    ax.axis("off")
    style = {"boxstyle": "round,pad=0.4", "facecolor": "#f4f6fb", "edgecolor": "#334"}

    def box(x: float, y: float, text: str, **extra: Any) -> None:
        ax.text(x, y, text, ha="center", va="center", fontsize=8.5, bbox={**style, **extra}, wrap=True)

    def arrow(x0: float, y0: float, x1: float, y1: float) -> None:
        ax.annotate("", xy=(x1, y1), xytext=(x0, y0), arrowprops={"arrowstyle": "->", "color": "#334"})

    top = width / 2
    box(top, 5.7, f"Patients in the manifest\nn = {record['manifest']}")
    reasons = "\n".join(f"{k}: {v}" for k, v in record["excluded_reasons"].items()) or "none"
    # the exclusion box hangs off the main line; annotate clips the arrow at the box's edge
    ax.annotate(f"Excluded: n = {record['excluded']}\n{reasons}", xy=(top, 4.95), xytext=(top + width * 0.06, 4.95),
                ha="left", va="center", fontsize=8.5, bbox={**style, "facecolor": "#fbf1f1"},
                arrowprops={"arrowstyle": "<-", "color": "#334"})
    box(top, 4.3, f"Analysed\nn = {record['analysed']}")
    arrow(top, 5.45, top, 4.55)
    step = width / (len(splits) + 1)
    models = record["models"]
    for i, split in enumerate(splits, start=1):
        info = record["splits"][split]
        x = step * i
        centres = ", ".join(f"{c} {n}" for c, n in info["centres"].items())
        box(x, 3.0, f"{split}\nn = {info['patients'] - info['excluded']}\n{centres}")
        arrow(top, 4.05, x, 3.35)
        scored = "\n".join(f"{m}: {info['scored'][m]}" for m in models)
        box(x, 1.55, f"scored\n{scored}")
        arrow(x, 2.65, x, 2.1)
        box(x, 0.35, f"evaluated: {info['evaluated']}\n(BM {info['evaluated_with_bm']}, "
                     f"not evaluated {info['not_evaluated']})", facecolor="#eef7ee")
        arrow(x, 1.0, x, 0.6)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
