"""The explanation stage after the models: SHAP summaries of the clinical, radiomics and fusion XGBoost models.

Per model, in the stage folder: ``<model>_shap_summary.png`` (beeswarm and mean |SHAP|),
``<model>_shap_importance.csv`` (mean |SHAP| per feature) and ``<model>_shap_values.csv`` (one
row per patient of the chosen cohort). The stage's inputs are the model folders (their
fingerprints) and the tables the models read, so it reruns when a model does or when its own
settings change, and nothing upstream reruns for it. :func:`explain_patient` is the same for
one patient of ``predict mri``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from osteomet.data.manifest import read_manifest
from osteomet.layout import MODEL_DIR
from osteomet.stage import Stage, StageOutcome
from osteomet.utils.files import write_text_atomic

STAGE = "model-explanations"


def _load(name: str, folder: Path) -> Any:
    from osteomet.models.clinical import ClinicalModel
    from osteomet.models.fusion import FusionModel
    from osteomet.models.radiomics import RadiomicsModel

    return {"clinical": ClinicalModel, "radiomics": RadiomicsModel, "fusion": FusionModel}[name].load(folder / MODEL_DIR)


def model_inputs(name: str, cohort: pd.DataFrame, *, radiomics: Path | None, deep: Path | None,
                 predictions: Mapping[str, Path], fusion_mode: str) -> pd.DataFrame:
    """What model ``name`` reads for each manifest patient, indexed by patient id (patients without it left out)."""
    from osteomet.pipeline.fusion import fusion_table
    from osteomet.radiomics.features import read_feature_table

    ids = cohort["patient_id"].astype(str)
    if name == "clinical":
        return cohort.set_index(ids)
    if name == "radiomics":
        table = read_feature_table(radiomics)
        table = table[table["error"].isna()] if "error" in table else table
        return table.set_index(table["patient_id"].astype(str))
    return fusion_table(cohort, fusion_mode, radiomics=radiomics, deep=deep, predictions=predictions)


def explain_models(manifest: str | Path, out: str | Path, *, models: Mapping[str, str | Path],
                   radiomics: str | Path | None, deep: str | Path | None, fusion_mode: str,
                   predictions: Mapping[str, str | Path], cohort: str = "train", top_k: int = 10) -> StageOutcome:
    """SHAP summary figure and tables of each model in ``models`` (name -> model stage folder) on ``cohort``."""
    from osteomet.models.explain import explain, shap_files, summary_figure
    from osteomet.utils.figures import save_figure

    out = Path(out)
    outputs = tuple(f for name in models for f in shap_files(name).values())
    inputs: dict[str, Any] = {"manifest": manifest, "radiomics": radiomics, "deep": deep,
                              **{f"model_{k}": v for k, v in models.items()},
                              **{f"predictions_{k}": v for k, v in predictions.items()}}
    stage = Stage(STAGE, out, settings={"cohort": cohort, "top_k": top_k, "models": sorted(models),
                                        "fusion_mode": fusion_mode, "shap": _shap_version()},
                  inputs=inputs, outputs=outputs)

    def work() -> dict[str, Any]:
        frame = read_manifest(manifest, check_files=False).to_frame()
        splits = frame.set_index(frame["patient_id"].astype(str))["split"]
        summary: dict[str, Any] = {}
        for name, folder in models.items():
            X = model_inputs(name, frame, radiomics=Path(radiomics) if radiomics else None,
                             deep=Path(deep) if deep else None, predictions={k: Path(v) for k, v in predictions.items()},
                             fusion_mode=fusion_mode)
            rows = X.index if cohort == "all" else X.index[splits.reindex(X.index).to_numpy() == cohort]
            if len(rows) == 0:
                summary[name] = {"patients": 0, "note": f"no {cohort} patient has this model's inputs"}
                continue
            explanation = explain(_load(name, Path(folder)), X.loc[rows])
            files = shap_files(name)
            importance = explanation.importance()
            write_text_atomic(out / files["importance"], importance.to_csv(index=False))
            values = explanation.values.rename_axis("patient_id").reset_index()
            write_text_atomic(out / files["values"], values.to_csv(index=False))
            save_figure(summary_figure(explanation, f"{name} model, {cohort} patients (n = {len(rows)})"),
                        out / files["summary"])
            summary[name] = {"patients": len(rows), "base": explanation.base,
                             "top": list(importance["feature"].head(top_k))}
        return summary

    return stage.run(work)


def explain_patient(models: Mapping[str, tuple[Any, pd.DataFrame]], patient_id: str, top_k: int,
                    figure: Path) -> dict[str, Any]:
    """``predict mri``: each model's top contributions for one patient (the single row given) and one figure."""
    from osteomet.models.explain import contributions, patient_figure
    from osteomet.utils.figures import save_figure

    result = {name: contributions(model, X, top_k) for name, (model, X) in models.items()}
    save_figure(patient_figure(result, patient_id), figure)
    return result


def explanation_markdown(explanations: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """``result.md`` lines: per model, the contributions as a table (log-odds, + raises the risk)."""
    lines = ["## Largest contributions (SHAP, log-odds)", ""]
    for name, entry in explanations.items():
        lines += [f"**{name}**: average log-odds {entry['base']:.3f}, this patient {entry['margin']:.3f} "
                  f"(p = {entry['probability']:.3f})", "", "| feature | value | SHAP |", "|---|---|---|"]
        lines += [f"| {t['feature']} | {_cell(t['value'])} | {t['shap']:+.3f} |" for t in entry["top"]]
        lines.append("")
    return lines


def _cell(value: float | None) -> str:
    return "missing" if value is None else f"{value:.4g}"


def _shap_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("shap")
    except metadata.PackageNotFoundError:
        return "not installed"
