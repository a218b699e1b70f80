"""The reporting checklist section: the CLEAR and TRIPOD+AI items a run can answer, answered from its files.

Each answerable item gets a sentence built from the run directory (counts from the split
manifest, settings from ``run.json`` and the stages' ``settings.yaml``, results from the
evaluation files) and a link to the report section that shows the table or figure. An item
whose step is absent from the run says "not done in this run". The items only the authors can
answer (title, ethics, eligibility, reference standard, discussion, ...) are listed at the end
as "to write". Item numbers: CLEAR v1.0 (Kocak et al., Insights Imaging 2023; checked against
the authors' online checklist, clearchecklist.github.io/clear_checklist) and TRIPOD+AI (Collins
et al., BMJ 2024; checked against transcriptions of the tripod-statement.org checklist).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from osteomet.config import recorded_settings
from osteomet.layout import (
    CALIBRATION,
    DELONG,
    EXTRACTION_LOG,
    FEATURES,
    FLOW_RECORD,
    HARMONIZATION_SUMMARY,
    ICC_BY_CLASS,
    METRICS,
    PREDICTIONS,
    STABILITY_FILTER,
    STAGE_RECORD,
    RunLayout,
)
from osteomet.report.html import Section, esc, table
from osteomet.report.models_sections import model_tuning
from osteomet.report.run_files import read_csv
from osteomet.report.run_record import versions
from osteomet.utils.files import read_json

NOT_DONE = "not done in this run"
SPLITS = ("train", "val", "test", "external")


@dataclass
class Context:
    """What the items read, loaded once."""

    layout: RunLayout
    present: set[str]
    config: dict[str, Any]
    manifest: pd.DataFrame | None
    metrics: pd.DataFrame | None

    @classmethod
    def load(cls, layout: RunLayout, sections: Sequence[Section]) -> "Context":
        record = read_json(layout.run_record) or {}
        return cls(layout, {s.id for s in sections if s.present}, record.get("config") or {},
                   read_csv(layout.manifest), read_csv(layout.evaluation / METRICS))

    def stage(self, folder: Path) -> dict[str, Any] | None:
        record = read_json(folder / STAGE_RECORD)
        return record if record and record.get("status") == "complete" else None


Answer = tuple[str, Sequence[str]]  # (the sentence, the section ids that show it)


@dataclass(frozen=True)
class Item:
    items: str
    topic: str
    answer: Callable[[Context], Answer | None]


def _counts(ctx: Context) -> str:
    frame = ctx.manifest
    parts = []
    for split in SPLITS:
        rows = frame[frame["split"] == split]
        if len(rows):
            parts.append(f"{split} {len(rows)} ({int((rows['label'] == 1).sum())} with BM)")
    return ", ".join(parts)


def split_answer(ctx: Context) -> Answer | None:
    if ctx.manifest is None or "split" not in ctx.manifest:
        return None
    split = ctx.config.get("split")
    if not split:
        return f"Split as given in the manifest: {_counts(ctx)}.", ["checklist-cohorts"]
    external = ", ".join(split.get("external_centres", [])) or "none"
    ratios = ":".join(f"{r:g}" for r in split.get("ratios", []))
    return (f"Patient-level split, stratified by label, seed {ctx.config.get('seed', '?')} (a split column in the "
            f"manifest is kept): centre(s) {external} held out as the external cohort, the others split "
            f"train:validation:test = {ratios}; {_counts(ctx)}. Images are checked for duplicates across splits "
            f"before any training.", ["checklist-cohorts"])


def _flow(ctx: Context) -> dict | None:
    import json

    path = ctx.layout.flow / FLOW_RECORD
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return None


def flow_answer(ctx: Context) -> Answer | None:
    if ctx.manifest is None:
        return None
    flow = _flow(ctx)
    if flow is None:
        return (f"{len(ctx.manifest)} patients in the manifest; per split and model the patients scored are in the "
                f"flow table below (a patient without a tumour ROI or features gets no radiomics or deep score).",
                ["checklist-cohorts"])
    reasons = ", ".join(f"{k} {v}" for k, v in flow["excluded_reasons"].items())
    per_split = "; ".join(f"{split} {info['evaluated']} evaluated of {info['patients']}"
                          for split, info in flow["splits"].items())
    return (f"{flow['manifest']} patients in the manifest, {flow['excluded']} excluded"
            + (f" ({reasons})" if reasons else "") + f", {flow['evaluated']} evaluated ({per_split}); "
            + ("every model on the same patients of a cohort." if flow.get("evaluation_patients") == "common"
               else "each model on the patients it scored."), ["flow", "checklist-cohorts"])


def centres_answer(ctx: Context) -> Answer | None:
    if ctx.manifest is None or "centre" not in ctx.manifest:
        return None
    counts = ctx.manifest["centre"].fillna("unknown").value_counts().sort_index()
    return (f"{len(counts)} centre(s): " + ", ".join(f"{c} {n}" for c, n in counts.items()) + " patients.",
            ["checklist-cohorts", "cohort"])


def missing_answer(ctx: Context) -> Answer | None:
    if ctx.manifest is None:
        return None
    clinical = [c for c in ("age", "psa", "gleason", "isup", "hematuria", "leukocyturia") if c in ctx.manifest]
    missing = ", ".join(f"{c} {int(ctx.manifest[c].isna().sum())}" for c in clinical if ctx.manifest[c].isna().any())
    log = read_csv(ctx.layout.radiomics / EXTRACTION_LOG)
    failed = int((log["status"] == "failed").sum()) if log is not None and "status" in log else 0
    flow = _flow(ctx)
    if flow is not None and flow.get("evaluation_patients") == "common":
        left = sum(info["not_evaluated"] for info in flow["splits"].values())
        extraction = (f"{failed} patient(s) failed radiomics extraction; {left} patient(s) not scored by every model "
                      f"are left out of every model's evaluation, with the reason in the patient flow."
                      if failed or left else "No patient failed radiomics extraction.")
    else:
        extraction = (f"{failed} patient(s) failed radiomics extraction and are left out of the radiomics model's "
                      f"evaluation (its n per cohort in the metrics table)." if failed else
                      "No patient failed radiomics extraction.")
    return (f"Missing clinical values ({missing or 'none'}, counted over all patients) are not imputed: XGBoost "
            f"routes them by the default direction it learnt on training patients. The radiomics selection fills "
            f"missing feature values with training medians for its own statistics only. {extraction}",
            ["flow", "cohort", "roc"])


def preprocessing_answer(ctx: Context) -> Answer | None:
    settings = recorded_settings(ctx.layout.preprocess)
    if not settings:
        return None
    spacing = settings.get("roi_spacing")
    return (f"DWI and ADC resampled onto the T2 grid; segmentation grid {settings.get('seg_size')} voxels; tumour ROI "
            f"{settings.get('roi_size')} voxels at {spacing if spacing else 'T2'} mm spacing; intensities clipped at "
            f"{settings.get('clip_sd')} SD and normalised per image.", ["run"])


def _params(ctx: Context) -> dict[str, Any] | None:
    return (recorded_settings(ctx.layout.radiomics) or {}).get("params")


def discretisation_answer(ctx: Context) -> Answer | None:
    params = _params(ctx)
    if not params:
        return None
    setting = params.get("setting", {})
    how = f"fixed bin width {setting['binWidth']}" if "binWidth" in setting else \
        f"fixed bin count {setting.get('binCount')}" if "binCount" in setting else "pyradiomics default (bin width 25)"
    resample = setting.get("resampledPixelSpacing")
    return (f"Discretisation: {how}; resampling for radiomics: "
            f"{resample if resample else 'none beyond preprocessing'}; normalize {setting.get('normalize', False)}.",
            ["run"])


def features_answer(ctx: Context) -> Answer | None:
    params = _params(ctx)
    if not params:
        return None
    table_path = ctx.layout.radiomics / FEATURES
    count = ""
    if table_path.is_file():
        columns = pd.read_parquet(table_path).select_dtypes("number").columns
        count = f"; {len(columns)} features per patient (all sequences)"
    version = versions(ctx.layout.root).get("pyradiomics", "?")
    return (f"pyradiomics {version}, 3D; image types {', '.join(params.get('imageType', {}))}; feature classes "
            f"{', '.join(params.get('featureClass', {}))}{count}. Every parameter not listed in the radiomics "
            f"settings is pyradiomics' default.", ["run"])


def segmentation_answer(ctx: Context) -> Answer | None:
    masks = ctx.config.get("segmentation", {}).get("masks") or \
        ("unetr" if (ctx.layout.masks / STAGE_RECORD).is_file() else None)
    if masks is None:
        return None
    if masks == "manifest":
        return "Tumour masks as given in the manifest (who drew them: to write).", []
    return ("Automatic UNETR masks trained on the training patients' masks (reviewed masks used first where present); "
            "Dice on held-out patients in the segmentation section.", ["segmentation"])


def _rigour_links(ctx: Context) -> list[str]:
    return [s for s in ("rigour", "stability", "harmonization") if s in ctx.present] or ["run"]


def stability_answer(ctx: Context) -> Answer | None:
    root = ctx.layout.root
    by_class = read_csv(root / "stability" / ICC_BY_CLASS)
    if by_class is None:
        return None
    kept = read_csv(root / "model_features" / STABILITY_FILTER)
    summary = (ctx.stage(root / "model_features") or {}).get("summary", {})
    threshold = summary.get("icc_threshold")
    if kept is not None and "kept" in kept:
        counts = f"; {int(kept['kept'].sum())} of {len(kept)} features kept"
    elif "features_stable" in summary:
        counts = f"; {summary['features_stable']} of {summary.get('features_extracted', '?')} features kept"
    else:
        counts = ""
    rule = f" at ICC >= {threshold}" if counts and threshold is not None else ""
    return (f"ICC(2,1) of every radiomics feature between the study's masks and one-voxel perturbations of them, on "
            f"the training patients only{counts}{rule}; unstable features never reach the selection.",
            _rigour_links(ctx))


def harmonization_answer(ctx: Context) -> Answer | None:
    root = ctx.layout.root
    summary = (ctx.stage(root / "model_features") or {}).get("summary", {})
    harmonized = summary.get("radiomics_harmonization")
    if not harmonized:
        return None
    if not isinstance(harmonized, dict):
        return f"Harmonization on, but {harmonized}.", _rigour_links(ctx)
    text = (f"Radiomics features mapped onto the training centre ({harmonized.get('reference')}) by reference-batch "
            f"ComBat, without labels; the training centre's features are unchanged")
    effect = read_csv(root / "model_features" / HARMONIZATION_SUMMARY)
    if effect is not None and {"centre", "smd_before", "smd_after"} <= set(effect.columns):
        text += "; median |SMD| from the reference " + ", ".join(
            f"{c} {b:.2f} -> {a:.2f}" for c, b, a in zip(effect["centre"], effect["smd_before"], effect["smd_after"]))
    if summary.get("deep_harmonization"):
        text += f"; deep features harmonized as well ({summary['deep_harmonization']})"
    return text + ".", _rigour_links(ctx)


def selection_answer(ctx: Context) -> Answer | None:
    settings = recorded_settings(ctx.layout.model("radiomics"))
    if not settings:
        return None
    selection = settings.get("selection", {})
    stage = ctx.stage(ctx.layout.model("radiomics")) or {}
    chosen = stage.get("summary", {}).get("features") or []
    return (f"On training patients only: near-constant features dropped, then of each group with |r| > "
            f"{selection.get('correlation_threshold')} the most discriminative kept, then L1 logistic regression "
            f"(strength by {selection.get('cv_folds')}-fold CV AUC, standardised on the training rows), at most "
            f"{selection.get('max_features')} features; {len(chosen)} selected.", ["explanations"])


def scaling_answer(ctx: Context) -> Answer | None:
    if recorded_settings(ctx.layout.model("radiomics")) is None:
        return None
    return ("Features are standardised (training mean and SD) only inside the LASSO selection; XGBoost is invariant "
            "to monotone scaling and sees the features as extracted.", [])


def algorithm_answer(ctx: Context) -> Answer | None:
    fusion = (recorded_settings(ctx.layout.model("fusion")) or {}).get("mode")
    stacking = ("clinical variables, selected radiomics features and deep features side by side" if fusion == "features"
                else "the base models' out-of-fold probabilities (stacking)")
    described = {"clinical": "clinical: XGBoost on the clinical variables",
                 "radiomics": "radiomics: selected features, XGBoost",
                 "deep": "deep: 3D ResNet chosen from a grid by validation AUC",
                 "fusion": f"fusion: XGBoost on {stacking}"}
    present = [text for name, text in described.items() if (ctx.layout.model(name) / PREDICTIONS).is_file()]
    if not present:
        return None
    return "Models: " + "; ".join(present) + ".", [s for s in ("grid", "tuning") if s in ctx.present]


def tuning_answer(ctx: Context) -> Answer | None:
    records = {name: model_tuning(ctx.layout, name) for name in ("clinical", "radiomics", "fusion")}
    records = {k: v for k, v in records.items() if v}
    if not records:
        return None
    chosen = "; ".join(f"{name}: " + ", ".join(f"{k} {v:g}" for k, v in r.get("chosen", {}).items())
                       + (f" (CV AUC {r['cv_auc']:.3f})" if r.get("cv_auc") is not None else "")
                       for name, r in records.items())
    settings = next(iter(records.values())).get("settings", {})
    nested = "nested in each outer fold" if settings.get("nested_out_of_fold", True) else "not nested"
    return (f"Grid search by {settings.get('folds')}-fold stratified CV AUC inside the training cohort (seed "
            f"{settings.get('seed')}), selection refitted per fold; out-of-fold training predictions {nested}. "
            f"Chosen: {chosen}.", ["tuning"])


def imbalance_answer(ctx: Context) -> Answer | None:
    if ctx.manifest is None:
        return None
    train = ctx.manifest[ctx.manifest["split"] == "train"]
    if train.empty:
        return None
    return (f"No resampling or class weights; training prevalence {float((train['label'] == 1).mean()):.1%}; "
            f"discrimination (AUC) does not depend on it and calibration is reported.", ["calibration"])


def performance_answer(ctx: Context) -> Answer | None:
    if ctx.metrics is None:
        return None
    n_resamples = ctx.config.get("evaluation", {}).get("n_resamples", "?")
    return (f"AUC with DeLong 95% CI per model and cohort; sensitivity, specificity, accuracy, PPV and NPV at the "
            f"Youden threshold fixed on {ctx.config.get('evaluation', {}).get('threshold_split', 'train+val')} "
            f"(bootstrap 95% CI, {n_resamples} resamples).", ["roc"])


def comparison_answer(ctx: Context) -> Answer | None:
    if read_csv(ctx.layout.evaluation / DELONG) is None:
        return None
    return "Paired DeLong tests between the models in each cohort, p adjusted by Holm.", ["delong"]


def calibration_answer(ctx: Context) -> Answer | None:
    frame = read_csv(ctx.layout.evaluation / CALIBRATION)
    if frame is None:
        return None
    return ("Brier score, calibration intercept and slope per model and cohort; calibration plots and decision "
            "curves (net benefit against treat all / treat none).", ["calibration"])


def external_answer(ctx: Context) -> Answer | None:
    if ctx.metrics is None:
        return None
    auc = ctx.metrics[(ctx.metrics["metric"] == "auc") & (ctx.metrics["cohort"] == "external")]
    if "ci_method" in auc:
        auc = auc[auc["ci_method"] == "delong"]
    if auc.empty:
        return None
    values = ", ".join(f"{m} {e:.3f}" for m, e in zip(auc["model"], auc["estimate"]))
    return (f"External cohort (held-out centre, never used for fitting, tuning or thresholds): AUC {values}.",
            ["roc"])


def explanation_answer(ctx: Context) -> Answer | None:
    if "explanations" not in ctx.present:
        return None
    cohort = (recorded_settings(ctx.layout.explanations) or {}).get("cohort", "train")
    return (f"SHAP (exact tree SHAP) summaries of the clinical, radiomics and fusion models on the {cohort} patients; "
            f"Grad-CAM maps of the deep model.", ["explanations", "gradcam"])


def baseline_answer(ctx: Context) -> Answer | None:
    if "cohort" not in ctx.present:
        return None
    return "Characteristics by bone-metastasis status with tests and odds ratios.", ["cohort"]


def model_files_answer(ctx: Context) -> Answer | None:
    if not (ctx.layout.model("fusion") / "model").is_dir():
        return None
    return ("The run directory is the model bundle: XGBoost models as JSON with their feature lists, networks as "
            "PyTorch state dicts, every stage's settings.yaml; `osteomet predict mri --model RUN` applies them to a "
            "new patient exactly as to the study's.", ["run"])


def software_answer(ctx: Context) -> Answer | None:
    found = versions(ctx.layout.root)
    if not found:
        return None
    return ", ".join(f"{k} {v}" for k, v in sorted(found.items())) + "; seeds and settings per stage recorded.", ["run"]


ITEMS: tuple[Item, ...] = (
    Item("CLEAR 12, 45; TRIPOD+AI 20a, 21", "Pipeline and participant flow; numbers with the outcome", flow_answer),
    Item("TRIPOD+AI 6a; CLEAR 13", "Number of centres and patients per centre", centres_answer),
    Item("CLEAR 15; TRIPOD+AI 12a", "Data split", split_answer),
    Item("CLEAR 44; TRIPOD+AI 20b", "Baseline characteristics", baseline_answer),
    Item("CLEAR 29; TRIPOD+AI 11", "Missing data", missing_answer),
    Item("CLEAR 19", "Segmentation strategy", segmentation_answer),
    Item("CLEAR 21, 22; TRIPOD+AI 7", "Image pre-processing and resampling", preprocessing_answer),
    Item("CLEAR 21, 32, 36; TRIPOD+AI 7, 12d", "Harmonization across centres", harmonization_answer),
    Item("CLEAR 23, 24", "Discretisation and image types", discretisation_answer),
    Item("CLEAR 25, 26, 27, 28", "Feature extraction, classes, number, default parameters", features_answer),
    Item("CLEAR 31, 46", "Feature stability (reproducibility)", stability_answer),
    Item("CLEAR 32; TRIPOD+AI 12b", "Feature scaling", scaling_answer),
    Item("CLEAR 33", "Dimension reduction (feature selection)", selection_answer),
    Item("CLEAR 30; TRIPOD+AI 13", "Class imbalance", imbalance_answer),
    Item("CLEAR 34; TRIPOD+AI 12c", "Algorithms", algorithm_answer),
    Item("CLEAR 35, 37; TRIPOD+AI 12c", "Hyper-parameter tuning and model selection", tuning_answer),
    Item("CLEAR 38, 39, 40, 47; TRIPOD+AI 12e, 15, 23a", "Performance metrics, threshold, uncertainty",
         performance_answer),
    Item("CLEAR 41, 42; TRIPOD+AI 12e", "Statistical comparison of models", comparison_answer),
    Item("CLEAR 39, 40, 42, 47, 48; TRIPOD+AI 12e, 23a", "Calibration and clinical utility", calibration_answer),
    Item("CLEAR 38; TRIPOD+AI 12a, 23a", "External validation", external_answer),
    Item("CLEAR 43, 46", "Interpretability and explainability", explanation_answer),
    Item("CLEAR 55, 57; TRIPOD+AI 12g, 22", "Settings and final model files", model_files_answer),
    Item("CLEAR 25, 34, 41, 56; TRIPOD+AI 18f", "Software versions", software_answer),
)

#: Items only the authors can write (a run knows nothing of them).
TO_WRITE: tuple[tuple[str, str], ...] = (
    ("CLEAR 1-3; TRIPOD+AI 1, 2", "Title, abstract, keywords"),
    ("CLEAR 4-6; TRIPOD+AI 3a-3c, 4", "Background, rationale, target population, health inequalities, objectives"),
    ("CLEAR 7", "Adherence to checklists (attach this section)"),
    ("CLEAR 8; TRIPOD+AI 17", "Ethics approval, consent, data protection"),
    ("CLEAR 9; TRIPOD+AI 10", "Sample size rationale"),
    ("CLEAR 10, 11; TRIPOD+AI 5a, 5b, 6b, 6c", "Study nature, data sources and dates, eligibility, treatments"),
    ("CLEAR 14", "Overlap with earlier publications of the same data"),
    ("CLEAR 16", "Imaging protocol per centre (scanner, field strength, sequences, b-values)"),
    ("CLEAR 17; TRIPOD+AI 9a-9c", "Definition and measurement of the clinical predictors"),
    ("CLEAR 18; TRIPOD+AI 8a-8c", "Reference standard for bone metastasis, its assessment and blinding"),
    ("CLEAR 20", "Who drew or reviewed the tumour masks, and their experience"),
    ("TRIPOD+AI 14, 23a", "Fairness: performance in relevant subgroups"),
    ("TRIPOD+AI 16, 20c", "Differences between development and evaluation settings"),
    ("TRIPOD+AI 18a-18e, 19", "Funding, conflicts, protocol, registration, data sharing, patient involvement"),
    ("TRIPOD+AI 12f, 24", "Model updating (e.g. recalibration) and its results, or that none was done"),
    ("CLEAR 49-52; TRIPOD+AI 25, 26, 27a-27c", "Interpretation, previous work, limitations, usability, next steps"),
    ("CLEAR 53, 54, 58", "Sharing images, masks and feature data; a ready-to-use system"),
)


def _links(ids: Sequence[str], titles: dict[str, str]) -> str:
    shown = [f'<a href="#{esc(i)}">{esc(titles.get(i, i))}</a>' for i in ids if i in titles]
    return ", ".join(shown) or "this section"


def _cohort_tables(ctx: Context) -> str:
    if ctx.manifest is None or "split" not in ctx.manifest:
        return ""
    frame = ctx.manifest.assign(centre=ctx.manifest["centre"].fillna("unknown") if "centre" in ctx.manifest else "all")
    counts = (frame.groupby(["split", "centre"]).agg(patients=("patient_id", "size"),
                                                     with_bm=("label", lambda s: int((s == 1).sum())))
              .reset_index())
    counts["order"] = counts["split"].map({s: i for i, s in enumerate(SPLITS)}).fillna(len(SPLITS))
    parts = ["<h3>Patients per split and centre</h3>"
             + table(counts.sort_values(["order", "centre"]), ("split", "centre", "patients", "with_bm"),
                     labels={"with_bm": "with BM"})]
    if ctx.metrics is not None and {"model", "cohort", "n", "n_pos"} <= set(ctx.metrics.columns):
        auc = ctx.metrics[ctx.metrics["metric"] == "auc"].drop_duplicates(["model", "cohort"])
        parts.append("<h3>Patients scored per model and cohort (flow)</h3>"
                     + table(auc, ("model", "cohort", "n", "n_pos"), labels={"n_pos": "with BM"}))
    return f'<div id="checklist-cohorts">{"".join(parts)}</div>'


def checklist_section(layout: RunLayout, sections: Sequence[Section]) -> Section:
    """The checklist, given the other sections (links go only to those present)."""
    section = Section("checklist", "Reporting checklist (CLEAR, TRIPOD+AI)")
    ctx = Context.load(layout, sections)
    if ctx.manifest is None and ctx.metrics is None:
        section.note = "no split/manifest.csv or evaluation/metrics.csv (a bpMRI study run by osteomet run mri)"
        return section
    titles = {s.id: s.title for s in sections if s.present}
    titles["checklist-cohorts"] = "patients per split (below)"
    rows = []
    for item in ITEMS:
        found = item.answer(ctx)
        text, where = found if found else (NOT_DONE, ())
        rows.append(f'<tr><td class="text">{esc(item.items)}</td><td class="text">{esc(item.topic)}</td>'
                    f'<td class="text">{esc(text)}</td>'
                    f'<td class="text">{_links(where, titles) if found else ""}</td></tr>')
    answered = ('<div class="wide"><table><thead><tr><th class="text">Items</th><th class="text">Topic</th>'
                '<th class="text">Answer from this run</th><th class="text">Shown in</th></tr></thead>'
                f'<tbody>{"".join(rows)}</tbody></table></div>')
    written = "".join(f"<li><b>{esc(items)}</b>: {esc(topic)}</li>" for items, topic in TO_WRITE)
    section.body = ('<p class="note">Items a run can answer, answered from its files (CLEAR v1.0 and TRIPOD+AI '
                    'item numbers). Check each against the manuscript.</p>' + answered + _cohort_tables(ctx)
                    + f'<h3 id="checklist-to-write">To write by the authors</h3><ul>{written}</ul>')
    return section


def add_study_sections(layout: RunLayout, sections: list[Section]) -> list[Section]:
    """The tuning, explanation and checklist sections, placed before the run section (the last)."""
    from osteomet.report.models_sections import explanations_section, tuning_section

    extra = [tuning_section(layout), explanations_section(layout)]
    at = next((i for i, s in enumerate(sections) if s.id == "run"), len(sections))
    ordered = sections[:at] + extra + sections[at:]
    checklist = checklist_section(layout, ordered)
    return ordered[:at + len(extra)] + [checklist] + ordered[at + len(extra):]
