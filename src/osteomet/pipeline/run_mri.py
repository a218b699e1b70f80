"""``osteomet run mri``: the bpMRI study from a manifest to its evaluation, one stage folder at a time.

Stages, in order (each a folder of the run directory named by :class:`osteomet.layout.RunLayout`,
each skipped when its inputs and settings are unchanged, so an interrupted run continues where it
stopped and a changed setting reruns only what depends on it)::

    split -> preprocess -> UNETR train + masks -> ROI crops -> radiomics -> deep grid
          -> deep predictions (cross-fitted on train), features, Grad-CAM
          -> radiomics stability (perturbed masks) -> model features (stable, ComBat-harmonized)
          -> clinical, radiomics and fusion models (tuned inside the training cohort) -> SHAP explanations
          -> conformal prediction sets per model (calibrated on validation + out-of-fold training)
          -> evaluation (+ cohort table)

``run.json`` at the top records the config, package versions, seeds and each stage's time.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from osteomet.data.manifest import read_manifest
from osteomet.layout import EXCLUSIONS, FLOW_RECORD, INDEX, MANIFEST, PREDICTIONS, QC_TABLE, RunLayout, open_run_dir
from osteomet.pipeline.study import StudyConfig
from osteomet.pipeline.timing import StageTimer
from osteomet.stage import Stage, StageOutcome, package_versions
from osteomet.utils.files import read_json, write_json_atomic

RUN_FORMAT = "osteomet.mri_run/1"
SPLIT_STAGE = "study-split"
MODELS = ("clinical", "radiomics", "deep", "fusion")


def study_manifest(manifest: str | Path, out: str | Path, config: StudyConfig) -> StageOutcome:
    """The study's manifest with a patient-level split (the manifest's own split kept when it has one)."""
    from osteomet.data.manifest import with_absolute_paths, write_manifest
    from osteomet.data.splits import assign_splits, check_no_leakage
    from osteomet.pipeline.inputs import manifest_inputs

    cohort = read_manifest(manifest, kind="mri")
    out = Path(out)
    stage = Stage(SPLIT_STAGE, out, settings={"split": config.split.model_dump(mode="json"), "seed": config.seed},
                  inputs=manifest_inputs(cohort, manifest), outputs=(MANIFEST,))

    def work() -> dict[str, Any]:
        from osteomet.data.study_checks import check_study_images, check_study_labels
        from osteomet.utils.progress import progress_bar

        frame = cohort.to_frame()
        centres = set(frame["centre"].dropna()) if "centre" in frame else set()
        external = [c for c in config.split.external_centres if c in centres]
        frame["split"] = assign_splits(frame, ratios=config.split.ratios, seed=config.seed,
                                       external_centres=external, given_column="split")
        check_no_leakage(frame, kind=cohort.kind)
        check_study_labels(frame, source=str(manifest))
        with progress_bar("check images", len(cohort), transient=True) as advance:
            check_study_images(cohort, ("t2", "dwi", "adc", "mask"), source=str(manifest), progress=advance)
        write_manifest(with_absolute_paths(frame, cohort.kind), out / MANIFEST, kind=cohort.kind,
                       overwrite=True)
        return {k: int(v) for k, v in frame["split"].value_counts().items()}

    return stage.run(work)


def run_mri(manifest: str | Path, out: str | Path, config: StudyConfig, *,
            log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run (or continue) the study; returns ``run.json``'s content.

    Torch's CPU threads are fixed (and recorded) so the same command gives the same networks wherever it is called
    from: every core for what runs in this process (UNETR, deep features), each parallel stage's workers their
    share (:func:`osteomet.utils.cores.worker_threads`; the grid's configurations one thread each).
    """
    from osteomet.layout import open_run_dir
    from osteomet.utils.cores import available_cores
    from osteomet.utils.run_lock import run_lock
    from osteomet.utils.torch import torch_threads

    with run_lock(open_run_dir(out, kind="mri")), torch_threads(available_cores()) as threads:
        return _run_mri(manifest, out, config, log=log, threads=threads)


def _run_mri(manifest: str | Path, out: str | Path, config: StudyConfig, *,
             log: Callable[[str], None], threads: int) -> dict[str, Any]:
    from osteomet.mri.classifier.config import load_classifier_config
    from osteomet.mri.segmentation.config import load_segmentation_config
    from osteomet.pipeline import clinical, cohort, deep, evaluate, fusion, preprocess, radiomics, rigour, segmentation
    from osteomet.pipeline.applicability import fit_applicability
    from osteomet.pipeline.trust import calibrate_trust

    started = time.perf_counter()
    layout = RunLayout(open_run_dir(out, kind="mri"))
    timer = StageTimer(log)
    seg_settings = load_segmentation_config(config.segmentation.config)
    if config.segmentation.max_epochs:
        seg_settings = seg_settings.model_copy(update={"max_epochs": config.segmentation.max_epochs})
    grid_settings = load_classifier_config(config.deep.config).model_copy(update={"seed": config.seed})
    if config.deep.max_epochs:
        grid_settings = grid_settings.model_copy(update={"max_epochs": config.deep.max_epochs})

    timer("split", lambda: study_manifest(manifest, layout.split, config))
    study = layout.manifest
    _, index = timer("preprocess", lambda: preprocess.preprocess_mri(study, layout.preprocess,
                                                                     seg_config=config.segmentation.config,
                                                                     jobs=config.jobs))
    preprocess.refuse_failed_patients(index, layout.preprocess)
    segdir, qc_table = None, None
    roi = layout.preprocess
    if config.segmentation.masks == "unetr":
        timer("segmentation train", lambda: segmentation.train_segmentation(
            layout.preprocess, study, layout.segmentation_model, seg_settings, resume="auto", device=config.device))
        timer("segmentation masks", lambda: segmentation.predict_segmentation(
            layout.preprocess, study, layout.segmentation_model, layout.masks, device=config.device))
        _, qc = timer("mask qc", lambda: cohort.qc_masks(study, layout.masks, config.segmentation.qc,
                                                          on_flagged=config.segmentation.on_flagged))
        _log_flagged(qc, log)
        cohort.require_review(study, layout.masks, qc, command="osteomet run mri")
        qc_table = layout.mask_qc / QC_TABLE
        segdir, roi = layout.masks, layout.roi
    timer("study cohort", lambda: cohort.study_cohort(study, layout.cohort, qc_table))
    study = layout.cohort / MANIFEST  # every model trains and scores on this one patient set
    if segdir is not None:
        _, index = timer("roi", lambda: preprocess.preprocess_mri(study, layout.roi,
                                                                  seg_config=config.segmentation.config,
                                                                  segdir=segdir, jobs=config.jobs))
        preprocess.refuse_failed_patients(index, layout.roi, "cutting the ROI crops")
    timer("radiomics", lambda: radiomics.extract_features(study, layout.radiomics, params=config.radiomics.params,
                                                          jobs=config.jobs, scheduler=config.scheduler, segdir=segdir))
    from osteomet.mri.classifier.grid import grid_specs
    from osteomet.utils.progress import progress_bar

    def grid() -> Any:
        with progress_bar("deep grid", len(grid_specs(grid_settings)), transient=True) as advance:
            return deep.run_deep_grid(roi, study, layout.deep_grid, grid_settings, segdir=segdir, jobs=config.jobs,
                                      scheduler=config.scheduler, device=config.device,
                                      on_config=lambda _result: advance())

    def deep_predictions() -> Any:
        with progress_bar("deep out-of-fold", config.deep.oof_folds, transient=True) as advance:
            return deep.predict_deep(layout.deep_grid, roi, study, layout.model("deep"), segdir=segdir,
                                     oof_folds=config.deep.oof_folds, device=config.device, progress=advance,
                                     jobs=config.jobs, scheduler=config.scheduler)

    _, _, winner = timer("deep grid", grid)
    timer("deep predictions", deep_predictions)
    timer("deep features", lambda: deep.deep_feature_table(layout.deep_grid, roi, study, layout.deep_features,
                                                           segdir=segdir, pca=config.deep.pca, device=config.device))
    shown = _gradcam_patients(roi, study, config.deep.gradcam_patients)
    if shown:
        timer("grad-cam", lambda: deep.gradcam_examples(layout.deep_grid, roi, study, layout.deep_gradcam,
                                                        patient_ids=shown, device=config.device))
    features, deep_table = rigour.rigour_stages(layout, study, config, segdir=segdir, timer=timer)
    tuning = config.tuning.config(config.seed)
    timer("clinical model", lambda: clinical.train_clinical_model(study, layout.model("clinical"),
                                                                  folds=config.clinical_folds, seed=config.seed,
                                                                  tuning=tuning))
    timer("radiomics model", lambda: radiomics.train_radiomics_model(
        features, study, layout.model("radiomics"), max_features=config.radiomics.max_features,
        seed=config.seed, tuning=tuning))
    base = {name: layout.model(name) / PREDICTIONS for name in ("clinical", "radiomics", "deep")}
    timer("fusion model", lambda: fusion.train_fusion_model(
        study, layout.model("fusion"), mode=config.fusion.mode, radiomics=features,
        deep=deep_table, predictions=base, folds=config.fusion.folds,
        seed=config.seed, max_features=config.radiomics.max_features, tuning=tuning))
    if config.explanations.enabled:
        timer("explanations", lambda: explain_study(layout, study, config, base, radiomics=features, deep=deep_table))
    files = {name: layout.model(name) / PREDICTIONS for name in MODELS}
    if config.conformal.enabled:
        timer("conformal", lambda: calibrate_trust(
            study, files, layout.trust, alpha=config.conformal.alpha,
            recalibrate=config.recalibration.enabled, too_few=config.conformal.too_few))
    if config.applicability.enabled:
        timer("applicability", lambda: fit_applicability(
            study, layout.applicability, config.applicability, segdir=segdir, radiomics=features,
            radiomics_model=layout.model("radiomics"), deep=deep_table, predictions=files, seed=config.seed,
            jobs=config.jobs))
    _, flow = timer("patient flow", lambda: cohort.patient_flow(
        layout.manifest, study, layout.cohort / EXCLUSIONS, files, layout.flow, layout,
        patients=config.evaluation.patients))
    _log_not_evaluated(flow, log)
    evaluated = flow.loc[flow["evaluated"], "patient_id"].tolist() if config.evaluation.patients == "common" else None
    _, metrics = timer("evaluation", lambda: evaluate.evaluate_prediction_files(
        list(files.values()), layout.evaluation, manifest=study, threshold_split=config.evaluation.threshold_split,
        n_resamples=config.evaluation.n_resamples, seed=config.seed, patients=evaluated))
    evaluate.write_cohort_table(study, layout.cohort_table)

    record = {"format": RUN_FORMAT, "kind": "mri", "manifest": str(Path(manifest).resolve()), "config": config.model_dump(mode="json"),
              "seeds": {"study": config.seed, "grid": grid_settings.seed, "segmentation": seg_settings.seed},
              "winner": winner.get("name"), "stages": timer.stages,
              "patient_flow": read_json(layout.flow / FLOW_RECORD),
              "seconds": round(time.perf_counter() - started, 2), "versions": package_versions(),
              "torch_threads": threads, "precision": _precision(grid_settings.precision, config.device)}
    write_json_atomic(layout.run_record, record)
    record["metrics"] = metrics
    return record


def _precision(setting: str, device: str | None) -> dict[str, str]:
    """The 3D-ResNet training arithmetic this host gives ``setting`` (each run records its own in its run.json)."""
    from osteomet.utils.precision import resolve_precision
    from osteomet.utils.torch import pick_device

    return {"deep": setting, **resolve_precision(setting, pick_device(device).type)}  # type: ignore[arg-type]


def _log_flagged(qc: pd.DataFrame, log: Callable[[str], None]) -> None:
    flagged = qc[qc["flagged"].astype(bool) & ~qc["reviewed"].astype(bool)]
    if len(flagged):
        actions = flagged["action"].value_counts()
        log(f"mask qc: {len(flagged)} automatic mask(s) flagged (" + ", ".join(f"{n} {a}" for a, n in actions.items())
            + "): " + "; ".join(f"{r.patient_id}: {r.reasons}" for r in flagged.head(5).itertuples())
            + (" ..." if len(flagged) > 5 else ""))


def _log_not_evaluated(flow: pd.DataFrame, log: Callable[[str], None]) -> None:
    left = flow[~flow["evaluated"] & ~flow["excluded"]]
    if len(left):
        log(f"patient flow: {len(left)} patient(s) not scored by every model, left out of every model's evaluation: "
            + "; ".join(f"{r.patient_id} ({r.not_evaluated_reason})" for r in left.head(5).itertuples())
            + (" ..." if len(left) > 5 else "") + " (all in flow/patient_flow.csv)")


def explain_study(layout: RunLayout, study: Path, config: StudyConfig, base: dict[str, Path], *, radiomics: Path,
                  deep: Path) -> Any:
    """The SHAP stage on the clinical, radiomics and fusion models, from the feature tables they were trained on."""
    from osteomet.models.explain import EXPLAINED
    from osteomet.pipeline.explain import explain_models

    return explain_models(study, layout.explanations, models={name: layout.model(name) for name in EXPLAINED},
                          radiomics=radiomics, deep=deep, fusion_mode=config.fusion.mode, predictions=base,
                          cohort=config.explanations.cohort, top_k=config.explanations.top_k)


def _gradcam_patients(roi: Path, manifest: Path, n: int) -> list[str]:
    """Up to ``n`` internal-test patients with ROI crops (external ones when there is no internal test)."""
    if n <= 0:
        return []
    index = pd.read_csv(roi / INDEX, dtype={"patient_id": str})
    ready = set(index.loc[index["status"] != "failed", "patient_id"])
    frame = read_manifest(manifest, check_files=False).to_frame()
    for split in ("test", "external"):
        ids = sorted(p for p in frame.loc[frame["split"] == split, "patient_id"] if p in ready)
        if ids:
            return ids[:n]
    return []


def summary_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """AUC (DeLong 95% CI) per model (rows) and cohort (columns), as text: what `run mri` and the demo print."""
    rows = metrics[(metrics["metric"] == "auc") & metrics["ci_method"].isin(["delong", "none"])]
    cells = rows.assign(text=[("n/a" if e != e else f"{e:.3f} (CI n/a)" if lo != lo else
                               f"{e:.3f} ({lo:.3f}-{hi:.3f})")
                              for e, lo, hi in zip(rows["estimate"], rows["ci_low"], rows["ci_high"])])
    table = cells.pivot(index="model", columns="cohort", values="text")
    order = [c for c in ("train", "val", "test", "external") if c in table.columns]
    models = [m for m in MODELS if m in table.index] + [m for m in table.index if m not in MODELS]
    return table.loc[models, order + [c for c in table.columns if c not in order]]
