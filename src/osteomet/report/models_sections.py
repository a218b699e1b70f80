"""Report sections of the XGBoost models' rigour: their nested tuning and their SHAP explanations."""

from __future__ import annotations

import json

import pandas as pd

from osteomet.layout import MODEL_DIR, TUNING, RunLayout, model_meta
from osteomet.models.explain import EXPLAINED, shap_files
from osteomet.report.html import Section, esc, key_values, note, table
from osteomet.report.run_files import png_figures, read_csv
from osteomet.utils.files import read_json

#: The saved model's metadata file, per model.


def model_tuning(layout: RunLayout, name: str) -> dict | None:
    """The ``tuning`` record of a saved model (chosen values, CV AUC, settings); None when not tuned or absent."""
    path = layout.model(name) / MODEL_DIR / model_meta(name)
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("tuning") if path.is_file() else None
    except (OSError, ValueError):
        return None


def tuning_section(layout: RunLayout) -> Section:
    section = Section("tuning", "Hyper-parameter tuning (inside the training cohort)")
    records = {name: record for name in EXPLAINED if (record := model_tuning(layout, name))}
    if not records:
        section.note = f"no models/<model>/{MODEL_DIR}/*.json with a tuning record (tuning: enabled in study.yaml)"
        return section
    rows = [{"model": name, **{f"chosen {k}": v for k, v in r.get("chosen", {}).items()}, "cv_auc": r.get("cv_auc"),
             "folds": r.get("folds"), "n": r.get("n"), "n_positive": r.get("n_positive"), "grid points": r.get("points"),
             "note": r.get("note")} for name, r in records.items()]
    frame = pd.DataFrame(rows)
    settings = next(iter(records.values())).get("settings", {})
    parts = [note("Each XGBoost model's settings were chosen by stratified k-fold cross-validated AUC among the "
                  "training patients only (validation, test and external patients never took part); steps before "
                  "XGBoost (feature selection) were refitted in every fold. "
                  + ("The out-of-fold training predictions tuned again inside each outer fold (nested)."
                     if settings.get("nested_out_of_fold", True) else
                     "The out-of-fold training predictions reuse the chosen values (not nested: slightly optimistic).")),
             table(frame, list(frame.columns), labels={"cv_auc": "CV AUC (mean over folds)"}),
             "<h3>Grid searched</h3>" + key_values((k, ", ".join(str(v) for v in values))
                                                   for k, values in settings.get("grid", {}).items())]
    for name in records:
        grid = read_csv(layout.model(name) / TUNING)
        if grid is not None:
            columns = [c for c in grid.columns if not c.startswith("auc_fold")]
            parts.append(f"<details><summary>Every grid point, {esc(name)} model</summary>"
                         + table(grid.sort_values("rank"), columns, labels={"mean_auc": "CV AUC", "sd_auc": "SD"})
                         + "</details>")
    section.body = "".join(parts)
    return section


def explanations_enabled(layout: RunLayout) -> bool:
    """False when the run's study turned explanations off (files of an earlier run may still be there)."""
    record = read_json(layout.run_record) or {}
    return bool(((record.get("config") or {}).get("explanations") or {}).get("enabled", True))


def explanations_section(layout: RunLayout) -> Section:
    section = Section("explanations", "Model explanations (SHAP)")
    folder = layout.explanations
    present = [name for name in EXPLAINED if (folder / shap_files(name)["importance"]).is_file()]
    if not present or not explanations_enabled(layout):
        section.note = "no explanations/<model>_shap_importance.csv (explanations: enabled in study.yaml)"
        return section
    parts = [note("Exact tree SHAP values (shap TreeExplainer) in log-odds: for each patient the values plus the "
                  "average add up to the model's output. Dots right of zero raised the predicted risk of bone "
                  "metastasis; colour is the feature's value (grey: missing, routed by XGBoost's learnt direction).")]
    for name in present:
        files = shap_files(name)
        importance = read_csv(folder / files["importance"])
        parts.append(f"<h3>{esc(name)} model</h3>"
                     + png_figures([(folder / files["summary"], f"SHAP summary, {name} model")], width=760))
        if importance is not None:
            parts.append(table(importance, ("rank", "feature", "mean_abs_shap", "mean_shap"),
                               labels={"mean_abs_shap": "mean |SHAP|", "mean_shap": "mean SHAP"}, max_rows=10))
    section.body = "".join(parts)
    return section
