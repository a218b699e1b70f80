"""``osteomet demo``: the study on the embedded synthetic cohorts.

The demo generates (or reuses) the bpMRI (two centres) and CT cohorts in its run directory,
runs the bpMRI study (`run mri` with the ``tiny`` study config), the CT study (slice
detection, lesion segmentation, per-lesion analysis against the truth masks, radiomics ICC of
predicted vs manual masks), predicts one held-out patient with `predict mri`, and writes
``summary.md``/``summary.json`` and ``report.html``. Every finished stage is reused on a rerun.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd
from rich.console import Console
from rich.table import Table

from osteomet.layout import (
    CT_TRUTH,
    DEMO_SUMMARY,
    EXTRACTION_LOG,
    FLOW_RECORD,
    MANIFEST,
    QC_TABLE,
    SYNTH_RECORD,
    RunLayout,
    open_run_dir,
)
from osteomet.utils.files import read_json, write_json_atomic, write_text_atomic
from osteomet.utils.progress import progress_bar


def _cohort(folder: Path, n: int, seed: int, config: Any, generate: Callable, label: str, jobs: int,
            console: Console) -> tuple[Path, float, bool]:
    """Generate a cohort unless the same one (n, seed, config) is already in ``folder``."""
    previous = read_json(folder / SYNTH_RECORD)
    wanted = {"n": n, "seed": seed, "config": config.model_dump(mode="json")}
    manifest = folder / MANIFEST
    if previous and manifest.exists() and {k: previous.get(k) for k in wanted} == _jsonable(wanted):
        console.print(f"[dim]{label}: reusing the cohort in {folder}[/]")
        return manifest, float(previous.get("seconds", 0.0)), True
    start = time.perf_counter()
    with progress_bar(f"synth {label}", n) as advance:
        manifest = generate(folder, n, seed=seed, config=config, progress=advance, overwrite=True, jobs=jobs)
    return manifest, time.perf_counter() - start, False


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))


def run_demo(out: str | Path, *, n_mri: int = 80, n_ct: int = 10, seed: int = 0, jobs: int | None = None,
             scheduler: str | None = None, console: Console | None = None, study: Any = None, ct_detection: Any = None,
             ct_segmentation: Any = None, ct_region: str = "whole_body") -> dict[str, Any]:
    """Generate both cohorts, run the bpMRI and CT studies, predict a held-out patient, write the report.

    ``study`` is a :class:`~osteomet.pipeline.study.StudyConfig` (default: the ``tiny`` preset);
    ``ct_detection`` / ``ct_segmentation`` are CT config objects (default: the ``tiny`` presets with
    one architecture each, :data:`DEMO_DETECTOR` and :data:`DEMO_SEGMENTER`, to stay within the
    demo's CPU budget; `osteomet ct detect|segment train` trains all three). ``scheduler`` sends both
    studies' parallel stages to that Dask cluster (the cohorts are generated here, with ``jobs``).
    ``jobs``: worker processes (default: every core).
    """
    from osteomet.data.manifest import read_manifest
    from osteomet.data.synth.ct import CTSynthConfig, generate_ct_cohort
    from osteomet.data.synth.mri import MRISynthConfig, generate_mri_cohort
    from osteomet.pipeline.evaluate import significant_variables
    from osteomet.pipeline.run_ct import run_ct
    from osteomet.pipeline.run_mri import run_mri, summary_table
    from osteomet.pipeline.study import load_study_config, override_study
    from osteomet.utils.cores import resolve_jobs

    console = console or Console()
    jobs = resolve_jobs(jobs)
    # a bad --scheduler is refused before the cohorts are generated
    study = override_study(study or load_study_config("tiny").model_copy(update={"jobs": jobs, "seed": seed}),
                           scheduler=scheduler)
    ct_study = _ct_study(jobs, scheduler)
    start = time.perf_counter()
    run = open_run_dir(out, kind="demo")
    layout = RunLayout(run)
    mri_path, mri_s, mri_cached = _cohort(layout.cohorts / "mri", n_mri, seed, MRISynthConfig(), generate_mri_cohort,
                                          "mri", jobs, console)
    ct_path, ct_s, ct_cached = _cohort(layout.cohorts / "ct", n_ct, seed, CTSynthConfig(region=ct_region),
                                       generate_ct_cohort, "ct", jobs, console)
    mri = read_manifest(mri_path)
    ct = read_manifest(ct_path)

    def log(line: str) -> None:
        console.print(f"[dim]{line}[/]")

    ct_detection, ct_segmentation = ct_detection or _demo_ct("detection"), ct_segmentation or _demo_ct("segmentation")
    record = run_mri(mri_path, run, study, log=log)
    ct_result = run_ct(ct_path, run, ct_study, models={"detection": ct_detection, "segmentation": ct_segmentation},
                       log=log)
    prediction = _predict_held_out(run, layout, log)
    ct_prediction = _predict_held_out_ct(run, layout, log)
    characteristics = significant_variables(pd.read_csv(layout.cohort_table))
    summary = {
        "mri": summarise_mri(mri.to_frame()),
        "ct": summarise_ct(ct.to_frame(), pd.read_csv(ct_path.parent / CT_TRUTH)),
        "auc": summary_table(record["metrics"]).to_dict(orient="index"),
        "ct_results": {k: v for k, v in ct_result.items() if k != "stages"},
        "prediction": prediction,
        "ct_prediction": ct_prediction,
        "seconds": {"mri": round(mri_s, 2), "ct": round(ct_s, 2), "total": round(mri_s + ct_s, 2),
                    "reused": {"mri": mri_cached, "ct": ct_cached},
                    "stages": {**record["stages"], **ct_result["stages"]}},
        "missing": mri.missing_report().drop(columns="patients").to_dict(orient="records"),
        "patient_flow": read_json(layout.flow / FLOW_RECORD),
        "significant_characteristics": characteristics,
        "run": str(run.resolve()),
    }
    summary["report"] = _report(run, log)
    summary["seconds"]["demo"] = round(time.perf_counter() - start, 2)
    write_json_atomic(run / DEMO_SUMMARY, summary)
    write_text_atomic(run / "summary.md", render_markdown(summary))
    print_summary(summary, console)
    return summary


def _ct_study(jobs: int, scheduler: str | None) -> Any:
    """The ``tiny`` CT study with the demo's workers and scheduler (its CT models come from :func:`_demo_ct`)."""
    from osteomet.pipeline.ct_study import CTStudyConfig, load_ct_study_config

    return CTStudyConfig.model_validate({**load_ct_study_config("tiny").model_dump(), "jobs": jobs,
                                         "scheduler": scheduler})


#: The CT architectures the demo trains (the cheapest of each task on CPU).
DEMO_DETECTOR, DEMO_SEGMENTER = "resnet34", "unet"


def _demo_ct(task: str) -> Any:
    if task == "detection":
        from osteomet.ct.detection.config import load_detection_config

        return load_detection_config("tiny").model_copy(update={"architectures": [DEMO_DETECTOR]})
    from osteomet.ct.segmentation.config import load_segmentation_config

    return load_segmentation_config("tiny").model_copy(update={"architectures": [DEMO_SEGMENTER]})


def _predict_held_out(run: Path, layout: RunLayout, log: Callable[[str], None]) -> dict[str, Any]:
    """`predict mri` on the first external patient with a usable automatic mask, as a user would on a new one."""
    from osteomet.pipeline.predict_mri import CLINICAL, predict_mri

    manifest = pd.read_csv(layout.manifest, dtype={"patient_id": str})
    held = manifest[manifest["split"] == "external"]
    if held.empty:
        held = manifest[manifest["split"] == "test"]
    # a patient whose automatic mask the study could extract radiomics from: predict mri segments it the
    # same way, and a mask of a few voxels (UNETR misses a tumour now and then) would need a radiologist's review
    # predict mri segments with the UNETR: a patient whose automatic mask the study's mask QC flagged (and
    # replaced by the manifest's) would need a radiologist's mask, so the example is one whose mask passed
    qc = layout.mask_qc / QC_TABLE
    if qc.is_file():
        action = pd.read_csv(qc, dtype={"patient_id": str}).set_index("patient_id")["action"]
        passed = held[held["patient_id"].map(action).eq("use")]
        held = passed if not passed.empty else held
    log_path = layout.radiomics / EXTRACTION_LOG
    if log_path.is_file():
        status = pd.read_csv(log_path, dtype={"patient_id": str}).set_index("patient_id")["status"]
        usable = held[held["patient_id"].map(status).ne("failed")]
        held = usable if not usable.empty else held
    row = held.iloc[0]
    base = layout.manifest.parent
    clinical = {k: float(row[k]) for k in CLINICAL if k in row and pd.notna(row[k])}
    result = predict_mri(run, run / "predict" / str(row["patient_id"]), t2=base / row["t2"], dwi=base / row["dwi"],
                         adc=base / row["adc"], clinical=clinical, patient_id=str(row["patient_id"]),
                         centre=str(row["centre"]) if pd.notna(row.get("centre")) else None, log=log)
    return {k: result[k] for k in ("patient_id", "probability", "threshold", "decision", "models", "seconds")}


def _predict_held_out_ct(run: Path, layout: RunLayout, log: Callable[[str], None]) -> dict[str, Any]:
    """`predict ct` on the first test CT of the study's split, as a clinician would on a new scan."""
    from osteomet.pipeline.predict_ct import predict_ct

    manifest = pd.read_csv(layout.ct_split / MANIFEST, dtype={"patient_id": str})
    held = manifest[manifest["split"] == "test"]
    row = (held if not held.empty else manifest).iloc[0]
    base = layout.ct_split
    bones = base / row["bone_map"] if pd.notna(row.get("bone_map")) else None
    result = predict_ct(run, run / "predict" / f"ct_{row['patient_id']}", ct=base / row["ct"], bones=bones,
                        patient_id=str(row["patient_id"]), log=log)
    return {k: result.get(k) for k in ("patient_id", "segmenter", "lesions", "lesion_volume_ml", "flagged_slices",
                                       "seconds")}


def _report(run: Path, log: Callable[[str], None]) -> str:
    """The HTML report of the run (``report.html``)."""
    from osteomet.report import build_report

    path = build_report(run)
    log(f"report: {path}")
    return str(path)


def summarise_mri(frame: pd.DataFrame) -> dict[str, Any]:
    by_label = frame.groupby("label")
    return {
        "patients": len(frame),
        "by_centre_label": {f"{c}/{'BM' if lab else 'no BM'}": int(v)
                            for (c, lab), v in frame.groupby(["centre", "label"]).size().items()},
        "by_split": {str(k): int(v) for k, v in frame["split"].value_counts().sort_index().items()},
        "age_mean": {("BM" if k else "no BM"): round(float(v), 1) for k, v in by_label["age"].mean().items()},
        "psa_median": {("BM" if k else "no BM"): round(float(v), 1) for k, v in by_label["psa"].median().items()},
        "gleason_ge8": {("BM" if k else "no BM"): round(float(v), 3)
                        for k, v in by_label["gleason"].apply(lambda g: (g >= 8).mean()).items()},
    }


def summarise_ct(frame: pd.DataFrame, lesions: pd.DataFrame) -> dict[str, Any]:
    with_lesions = lesions["patient_id"].nunique() if len(lesions) else 0
    return {
        "patients": len(frame),
        "patients_with_lesions": int(with_lesions),
        "lesions": int(len(lesions)),
        "lesions_by_group": {str(k): int(v) for k, v in lesions["group"].value_counts().items()} if len(lesions) else {},
        "lesions_by_kind": {str(k): int(v) for k, v in lesions["kind"].value_counts().items()} if len(lesions) else {},
        "lesions_by_type": {str(k): int(v) for k, v in lesions["type"].value_counts().items()} if len(lesions) else {},
    }


def render_markdown(summary: dict[str, Any]) -> str:
    mri, ct, sec = summary["mri"], summary["ct"], summary["seconds"]
    lines = ["# osteomet demo summary", "", f"Run directory: `{summary['run']}`", "",
             "## bpMRI bone-metastasis models: AUC (DeLong 95% CI)", ""]
    cohorts = list(next(iter(summary["auc"].values()), {}).keys())
    lines += ["| model | " + " | ".join(cohorts) + " |", "|---|" + "---|" * len(cohorts)]
    lines += [f"| {model} | " + " | ".join(str(row.get(c, "")) for c in cohorts) + " |"
              for model, row in summary["auc"].items()]
    p = summary["prediction"]
    lines += ["", f"`predict mri` on held-out patient {p['patient_id']}: {p['decision']} (fusion probability "
                  f"{p['probability']:.3f}, threshold {p['threshold']:.3f})", "",
              "## CT", f"- {summary['ct_results']}", "", "## bpMRI cohort", f"- patients: {mri['patients']}"]
    lines += [f"- {k}: {v}" for k, v in mri["by_centre_label"].items()]
    lines += [f"- split {k}: {v}" for k, v in mri["by_split"].items()]
    lines += [f"- mean age: {mri['age_mean']}", f"- median PSA: {mri['psa_median']}",
              f"- Gleason >= 8: {mri['gleason_ge8']}", "", "## CT cohort",
              f"- patients: {ct['patients']} ({ct['patients_with_lesions']} with lesions)",
              f"- lesions: {ct['lesions']}; by bone group {ct['lesions_by_group']}; by kind {ct['lesions_by_kind']}; "
              f"by type {ct['lesions_by_type']}", "",
              "## Cohort characteristics (`evaluation/cohort_characteristics.csv`)",
              f"- BH-adjusted p < 0.05: {', '.join(summary.get('significant_characteristics') or []) or 'none'}", "",
              "## Time (seconds)",
              f"- cohort generation: MRI {sec['mri']}, CT {sec['ct']} (reused: {sec['reused']})"]
    lines += [f"- {name}: {v['seconds']}{' (up to date)' if v['skipped'] else ''}" for name, v in sec["stages"].items()]
    lines += [f"- whole demo: {sec.get('demo')}", ""]
    if summary.get("report"):
        lines += [f"Report: `{summary['report']}`", ""]
    return "\n".join(lines)


def print_summary(summary: dict[str, Any], console: Console) -> None:
    sec = summary["seconds"]
    table = Table(title="bpMRI bone-metastasis models: AUC (DeLong 95% CI)")
    table.add_column("model")
    cohorts = list(next(iter(summary["auc"].values()), {}).keys())
    for cohort in cohorts:
        table.add_column(cohort)
    for model, row in summary["auc"].items():
        table.add_row(model, *[str(row.get(c, "")) for c in cohorts])
    console.print(table)
    p = summary["prediction"]
    console.print(f"predict mri, held-out patient {p['patient_id']}: [bold]{p['decision']}[/] (probability "
                  f"{p['probability']:.3f}, threshold {p['threshold']:.3f})")
    ct = summary["ct_results"]
    console.print(f"CT: test Dice {ct.get('dice')}, slice AUC (95% CI) {ct.get('slice_auc')}, "
                  f"lesion sensitivity {ct.get('lesion_sensitivity')}")
    console.print(f"generation time: MRI {sec['mri']:.1f} s + CT {sec['ct']:.1f} s"
                  + (" (reused)" if all(sec["reused"].values()) else ""))
    console.print(f"[bold]demo[/] {sec.get('demo', 0):.0f} s; run directory [bold]{summary['run']}[/]"
                  + (f"; report [bold]{summary['report']}[/]" if summary.get("report") else ""))
