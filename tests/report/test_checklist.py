"""The reporting checklist: answers drawn from the run's own files, links to the sections that show them, absent
steps marked, the items only authors can write listed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from osteomet.layout import RunLayout
from osteomet.report.build import build_sections
from osteomet.report.checklist import ITEMS, NOT_DONE, TO_WRITE


def _rows(body: str) -> dict[str, tuple[str, str]]:
    """Topic -> (answer, links) of the checklist table."""
    found = {}
    for row in re.findall(r"<tr>(.*?)</tr>", body.split("</tbody>")[0], flags=re.S):
        cells = re.findall(r'<td class="text">(.*?)</td>', row, flags=re.S)
        if len(cells) == 4:
            found[cells[1].replace("&amp;", "&")] = (cells[2], cells[3])
    return found


def test_checklist_answers_come_from_the_run(study_run: Path) -> None:
    sections = build_sections(study_run)
    ids = [s.id for s in sections if s.present]
    checklist = next(s for s in sections if s.id == "checklist")
    assert checklist.present and ids.index("checklist") == ids.index("run") - 1
    rows = _rows(checklist.body)
    assert set(rows) == {item.topic for item in ITEMS}

    manifest = pd.read_csv(RunLayout(study_run).manifest)
    train = manifest[manifest["split"] == "train"]
    split_answer = rows["Data split"][0]
    assert f"train {len(train)} ({int(train['label'].sum())} with BM)" in split_answer
    external = manifest[manifest["split"] == "external"]
    assert f"external {len(external)} ({int(external['label'].sum())} with BM)" in split_answer
    centres = manifest["centre"].value_counts()
    assert all(f"{c} {n}" in rows["Number of centres and patients per centre"][0] for c, n in centres.items())
    assert f"{float(train['label'].mean()):.1%}" in rows["Class imbalance"][0]

    meta = json.loads((study_run / "models" / "clinical" / "model" / "clinical_model.json").read_text(encoding="utf-8"))
    chosen = meta["tuning"]["chosen"]
    tuning = rows["Hyper-parameter tuning and model selection"]
    assert f"max_depth {chosen['max_depth']:g}" in tuning[0] and f"CV AUC {meta['tuning']['cv_auc']:.3f}" in tuning[0]
    assert 'href="#tuning"' in tuning[1]

    metrics = pd.read_csv(study_run / "evaluation" / "metrics.csv")
    ext = metrics[(metrics["metric"] == "auc") & (metrics["cohort"] == "external") & (metrics["ci_method"] == "delong")]
    assert all(f"{m} {e:.3f}" in rows["External validation"][0] for m, e in zip(ext["model"], ext["estimate"]))

    # stability and harmonization answered from the stage files (counted here from the filter table)
    kept = pd.read_csv(study_run / "model_features" / "stability_filter.csv")
    stability = rows["Feature stability (reproducibility)"][0]
    assert f"{int(kept['kept'].sum())} of {len(kept)} features kept at ICC &gt;= 0.5" in stability
    assert 'href="#rigour"' in rows["Feature stability (reproducibility)"][1]
    harmonization = rows["Harmonization across centres"][0]
    effect = pd.read_csv(study_run / "model_features" / "harmonization_summary.csv")
    assert "reference-batch ComBat" in harmonization
    assert all(f"{c} {b:.2f} -&gt; {a:.2f}" in harmonization
               for c, b, a in zip(effect["centre"], effect["smd_before"], effect["smd_after"]))
    # links only to sections that are on the page
    links = set(re.findall(r'href="#([^"]+)"', checklist.body))
    assert links and links <= set(ids) | {"checklist-cohorts"}
    assert 'id="checklist-cohorts"' in checklist.body
    assert all(items in checklist.body for items, _ in TO_WRITE) and "To write by the authors" in checklist.body


def test_a_run_with_evaluation_only_marks_the_missing_steps(study_run: Path, tmp_path: Path) -> None:
    import shutil

    shutil.copy(study_run / "osteomet-run.json", tmp_path / "osteomet-run.json")
    shutil.copytree(study_run / "evaluation", tmp_path / "evaluation")
    checklist = next(s for s in build_sections(tmp_path) if s.id == "checklist")
    rows = _rows(checklist.body)
    assert rows["Hyper-parameter tuning and model selection"][0] == NOT_DONE
    assert rows["Interpretability and explainability"][0] == NOT_DONE
    assert rows["Feature stability (reproducibility)"][0] == NOT_DONE
    assert rows["Harmonization across centres"][0] == NOT_DONE
    assert rows["Data split"][0] == NOT_DONE  # no split manifest in this folder
    assert rows["Performance metrics, threshold, uncertainty"][0] != NOT_DONE


def test_stability_and_harmonization_are_answered_from_their_stage_files(study_run: Path, tmp_path: Path) -> None:
    """Files laid out as `run mri`'s stability and model-features stages write them (issue 18, items 1 and 2)."""
    import shutil

    from osteomet.utils.files import write_json_atomic

    shutil.copy(study_run / "osteomet-run.json", tmp_path / "osteomet-run.json")
    shutil.copytree(study_run / "evaluation", tmp_path / "evaluation")
    (tmp_path / "stability").mkdir()
    pd.DataFrame({"class": ["firstorder", "glcm"], "n_features": [18, 24], "n_defined": [18, 24],
                  "min": [0.41, 0.2], "median": [0.93, 0.81], "max": [1.0, 0.99]}).to_csv(
        tmp_path / "stability" / "icc_by_class.csv", index=False)
    features = tmp_path / "model_features"
    features.mkdir()
    pd.DataFrame({"feature": [f"f{i}" for i in range(42)], "icc": 0.5, "kept": [True] * 30 + [False] * 12}).to_csv(
        features / "stability_filter.csv", index=False)
    pd.DataFrame({"centre": ["C2"], "n_features": [30], "smd_before": [0.84], "smd_after": [0.03],
                  "sd_ratio_before": [1.4], "sd_ratio_after": [1.0]}).to_csv(
        features / "harmonization_summary.csv", index=False)
    write_json_atomic(features / "stage.json", {
        "stage": "model-features", "status": "complete", "fingerprint": "x", "summary": {
            "features_extracted": 42, "features_stable": 30, "icc_threshold": 0.75,
            "radiomics_harmonization": {"reference": "C1", "patients": {"C1": 20, "C2": 9}}}})
    rows = _rows(next(s for s in build_sections(tmp_path) if s.id == "checklist").body)
    stability = rows["Feature stability (reproducibility)"][0]
    assert "30 of 42 features kept at ICC &gt;= 0.75" in stability and "training patients only" in stability
    harmonization = rows["Harmonization across centres"][0]
    assert "training centre (C1)" in harmonization and "C2 0.84 -&gt; 0.03" in harmonization
