"""``osteomet demo``: the study on the embedded synthetic cohorts.

At this stage the demo generates (or reuses) the bpMRI and CT cohorts in its run
directory, validates their manifests, writes the bpMRI cohort characteristics table and
the per-lesion analysis of the CT cohort's lesion masks, and a short summary; later stages
append their steps here.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd
from rich.console import Console
from rich.table import Table

from osteomet.layout import RunLayout, open_run_dir
from osteomet.utils.files import read_json, write_json_atomic, write_text_atomic
from osteomet.utils.progress import progress_bar


def _cohort(folder: Path, n: int, seed: int, config: Any, generate: Callable, label: str, jobs: int,
            console: Console) -> tuple[Path, float, bool]:
    """Generate a cohort unless the same one (n, seed, config) is already in ``folder``."""
    previous = read_json(folder / "synth.json")
    wanted = {"n": n, "seed": seed, "config": config.model_dump(mode="json")}
    manifest = folder / "manifest.csv"
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


def run_demo(out: str | Path, *, n_mri: int = 40, n_ct: int = 10, seed: int = 0, jobs: int = 1,
             console: Console | None = None) -> dict[str, Any]:
    """Generate both cohorts, validate them and write ``summary.md`` / ``summary.json``."""
    from osteomet.data.manifest import read_manifest
    from osteomet.data.synth.ct import CTSynthConfig, generate_ct_cohort
    from osteomet.data.synth.mri import MRISynthConfig, generate_mri_cohort
    from osteomet.pipeline.evaluate import significant_variables, write_cohort_table

    console = console or Console()
    run = open_run_dir(out, kind="demo")
    layout = RunLayout(run)
    mri_path, mri_s, mri_cached = _cohort(layout.cohorts / "mri", n_mri, seed, MRISynthConfig(), generate_mri_cohort,
                                          "mri", jobs, console)
    ct_path, ct_s, ct_cached = _cohort(layout.cohorts / "ct", n_ct, seed, CTSynthConfig(region="whole_body"),
                                       generate_ct_cohort,
                                       "ct", jobs, console)
    mri = read_manifest(mri_path)
    ct = read_manifest(ct_path)
    table, _ = write_cohort_table(mri_path, layout.cohort_table)
    characteristics = significant_variables(table)
    lesion_table = _ct_lesions(ct_path, layout.ct_lesions)

    summary = {
        "mri": summarise_mri(mri.to_frame()),
        "ct": summarise_ct(ct.to_frame(), pd.read_csv(ct_path.parent / "lesions_truth.csv")),
        "seconds": {"mri": round(mri_s, 2), "ct": round(ct_s, 2), "total": round(mri_s + ct_s, 2),
                    "reused": {"mri": mri_cached, "ct": ct_cached}},
        "missing": mri.missing_report().drop(columns="patients").to_dict(orient="records"),
        "significant_characteristics": characteristics,
        "ct_lesion_analysis": lesion_table,
    }
    write_json_atomic(run / "summary.json", summary)
    write_text_atomic(run / "summary.md", render_markdown(summary))
    print_summary(summary, console)
    return summary


def _ct_lesions(manifest: Path, out: Path) -> dict[str, Any]:
    """Per-lesion analysis (bone, cluster, diffuse/focal) of the CT cohort's lesion masks."""
    from osteomet.ct.lesion_cohort import LesionSettings
    from osteomet.pipeline.ct_lesions import analyse_lesion_cohort

    analyse_lesion_cohort(manifest, out, settings=LesionSettings())
    lesions = pd.read_csv(out / "lesions.csv")
    if lesions.empty:
        return {"lesions": 0}
    return {"lesions": int(len(lesions)),
            "diffuse": int((lesions["kind"] == "diffuse").sum()) if "kind" in lesions else None,
            "weight_bearing": int(lesions["weight_bearing"].astype(bool).sum()) if "weight_bearing" in lesions else None}


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
    lines = ["# osteomet demo summary", "", "## bpMRI cohort", f"- patients: {mri['patients']}"]
    lines += [f"- {k}: {v}" for k, v in mri["by_centre_label"].items()]
    lines += [f"- split {k}: {v}" for k, v in mri["by_split"].items()]
    lines += [f"- mean age: {mri['age_mean']}", f"- median PSA: {mri['psa_median']}",
              f"- Gleason >= 8: {mri['gleason_ge8']}", "", "## CT cohort",
              f"- patients: {ct['patients']} ({ct['patients_with_lesions']} with lesions)",
              f"- lesions: {ct['lesions']}; by bone group {ct['lesions_by_group']}; by kind {ct['lesions_by_kind']}; "
              f"by type {ct['lesions_by_type']}",
              f"- per-lesion analysis of the masks (`ct/lesions/`): {summary.get('ct_lesion_analysis')}", "",
              "## Cohort characteristics (`evaluation/cohort_characteristics.csv`)",
              f"- BH-adjusted p < 0.05: {', '.join(summary.get('significant_characteristics') or []) or 'none'}", "",
              "## Time",
              f"- generation: MRI {sec['mri']} s, CT {sec['ct']} s, total {sec['total']} s "
              f"(reused from a previous run: {sec['reused']})", ""]
    return "\n".join(lines)


def print_summary(summary: dict[str, Any], console: Console) -> None:
    mri, ct, sec = summary["mri"], summary["ct"], summary["seconds"]
    table = Table(title="bpMRI cohort")
    table.add_column("group")
    table.add_column("patients", justify="right")
    for key, value in mri["by_centre_label"].items():
        table.add_row(key, str(value))
    for key, value in mri["by_split"].items():
        table.add_row(f"split {key}", str(value))
    console.print(table)
    console.print(f"mean age {mri['age_mean']}, median PSA {mri['psa_median']}, Gleason>=8 {mri['gleason_ge8']}")
    console.print(f"CT: {ct['patients']} patients, {ct['lesions']} lesions {ct['lesions_by_group']}")
    console.print(f"[bold]generation time[/]: MRI {sec['mri']:.1f} s + CT {sec['ct']:.1f} s = {sec['total']:.1f} s"
                  + (" (reused)" if all(sec["reused"].values()) else ""))
