"""The CT study as stages: slice detection, lesion segmentation, per-lesion analysis, radiomics ICC.

Each step is a stage (skipped when its manifest, settings and upstream checkpoints are
unchanged) in the run directory's ``ct/`` folders::

    ct/detection/model, ct/detection/predictions        (slice detectors: train, predict + Grad-CAM)
    ct/segmentation/model, ct/segmentation/predictions  (MONAI segmenters: train, masks)
    ct/nnunet/{export,plan,train,predict}               (nnU-Net v2, imported to ct/segmentation/predictions/nnunet)
    ct/segmentation/predictions/comparison              (every segmenter on the test patients: Dice CIs, paired tests)
    ct/lesions/<segmenter>                              (predicted lesions against the manifest's masks)
    ct/icc/<segmenter>                                  (radiomics of predicted vs manual masks, ICC by class)
"""

from __future__ import annotations

import math
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from osteomet.data.manifest import read_manifest
from osteomet.errors import InputError
from osteomet.layout import CHECKPOINTS, EXTRACTION_LOG, FEATURES, ICC, METRICS, RunLayout
from osteomet.pipeline.inputs import manifest_inputs
from osteomet.pipeline.timing import StageTimer
from osteomet.stage import Stage, StageOutcome
from osteomet.utils.progress import progress_bars


def _checkpoints(model: Path) -> list[Path]:
    return sorted(model.glob("*/checkpoints/best.pt"))


def train_ct_models(task: str, manifest: Path, out: Path, settings, *, device: str | None = None, jobs: int = 1,
                    scheduler: str | None = None) -> StageOutcome:
    """Train every architecture of ``settings`` (``task``: detection or segmentation) as one stage.

    Each architecture is one Dask task with ``jobs > 1`` or a ``scheduler``, on the cores shared by the workers
    that run (``worker_threads(jobs, architectures)``) wherever it trains, so the networks do not depend on where
    they ran.
    """
    from osteomet.pipeline.ct_models import prepare_ct_run, task_trainer, train_each_architecture
    from osteomet.utils.cores import worker_threads

    _, train = task_trainer(task)
    cohort = read_manifest(manifest, kind="ct", require=("lesion_mask",))
    stage = Stage(f"ct-{task}-train", out, settings=settings, inputs=manifest_inputs(cohort, manifest))
    # an interrupted stage continues the architectures it had started; a changed one starts them over
    resume = stage.state() == "interrupted"
    started = [p.name for p in out.iterdir() if (p / CHECKPOINTS).is_dir()] if out.is_dir() else []

    def work() -> dict[str, Any]:
        root, chosen = prepare_ct_run(manifest, out, settings, None, None)
        results = train_each_architecture(root, out, chosen, partial(train, resume=resume), device, task=task,
                                          resume=resume, jobs=jobs, scheduler=scheduler,
                                          threads=worker_threads(jobs, len(chosen.architectures)))
        return {architecture: {"best_epoch": result.best_epoch, "epochs_run": result.epochs_run}
                for architecture, result in results.items()}

    return stage.run(work, partial=started)


def predict_ct_detection(manifest: Path, model: Path, out: Path, *, device: str | None = None,
                         n_resamples: int = 1000) -> StageOutcome:
    from osteomet.ct.detection.infer import predict_detection, trained_architectures

    cohort = read_manifest(manifest, kind="ct")
    stage = Stage("ct-detection-predict", out, settings={"n_resamples": n_resamples},
                  inputs={**manifest_inputs(cohort, manifest), "weights": _checkpoints(model)})

    def work() -> dict[str, Any]:
        architectures = trained_architectures(model)
        with progress_bars(("slices", len(cohort)), ("detect", len(cohort) * len(architectures))) as (cached, scored):
            predict_detection(cohort, model, out, architectures=architectures, device=device, gradcam=True,
                              n_resamples=n_resamples, on_cached=cached, progress=scored)
        return {"architectures": architectures}

    return stage.run(work)


def predict_ct_segmentation(manifest: Path, model: Path, out: Path, *, device: str | None = None) -> StageOutcome:
    """Every MONAI segmenter's masks and per-patient scores (compared with the others by :func:`compare_ct_segmenters`)."""
    from osteomet.ct.segmentation.infer import predict_segmentation

    cohort = read_manifest(manifest, kind="ct")
    stage = Stage("ct-segmentation-predict", out, settings={},
                  inputs={**manifest_inputs(cohort, manifest), "weights": _checkpoints(model)})

    def work() -> dict[str, Any]:
        with progress_bars(("slices", len(cohort)), ("segment", len(cohort))) as (cached, segmented):
            table = predict_segmentation(cohort, model, out, device=device, on_cached=cached, progress=segmented)
        tested = table.dropna(subset=["dice"]) if "dice" in table else table.iloc[0:0]
        return {"patients": int(table["patient_id"].nunique()),
                "mean_test_dice": float(tested.loc[tested["split"] == "test", "dice"].mean())
                if len(tested) else None}

    return stage.run(work)


COMPARE_STAGE = "ct-segmentation-compare"


def compare_ct_segmenters(predictions: Path, out: Path, *, split: str = "test") -> StageOutcome:
    """Every segmenter in ``predictions`` (MONAI and nnU-Net alike) on the ``split`` patients all of them scored:
    per-patient Dice with bootstrap CIs, paired tests between every pair with Holm adjustment, box plots."""
    from osteomet.ct.segmentation.compare import compare_segmentations, read_metrics

    tables = [folder.parent / METRICS for folder in segmenter_masks(predictions).values()
              if (folder.parent / METRICS).is_file()]
    stage = Stage(COMPARE_STAGE, out, settings={"split": split, "adjust": "holm"}, inputs={"metrics": tables})

    def work() -> dict[str, Any]:
        if not tables:
            raise InputError(f"{predictions}: no segmenter's <model>/{METRICS} to compare")
        table = read_metrics(tables)
        scored = table.dropna(subset=["dice"])
        models = sorted(map(str, table["model"].unique()))
        if not (scored["split"] == split).any():  # nothing to compare on (no scored patient of the split)
            return {"models": models, "patients": 0}
        results = compare_segmentations(scored, out, split=split, adjust="holm")
        summary = results["summary"]
        dice = summary[summary["metric"] == "dice"] if "metric" in summary else summary.iloc[0:0]
        return {"models": models, "patients": int(dice["n"].max()) if len(dice) else 0,
                "mean_dice": {str(r.model): round(float(r.mean), 4) for r in dice.itertuples()}}

    return stage.run(work)


def radiomics_icc(manifest: Path, masks: Path, out: Path, *, params: str = "tiny",
                  manual: Path | None = None, jobs: int = 1, scheduler: str | None = None) -> StageOutcome:
    """Features from the manual and the predicted lesion masks, and their ICC(2,1) by feature class.

    ``manual``: the manual masks' feature folder when several segmenters share it (extracted once).
    """
    from osteomet.pipeline.radiomics import extract_features
    from osteomet.radiomics.reproducibility import run_icc

    manual = manual or out / "manual"
    _, by_hand = extract_features(manifest, manual, params=params, jobs=jobs, scheduler=scheduler)
    _, predicted = extract_features(manifest, out / "predicted", params=params, masks=masks, jobs=jobs,
                                    scheduler=scheduler)
    stage = Stage("ct-icc", out / "icc", settings={"model": "2,1"},
                  inputs={"manual": manual / FEATURES,
                          "predicted": out / "predicted" / FEATURES}, outputs=(ICC,))

    def work() -> dict[str, Any]:
        both = _extracted(by_hand) & _extracted(predicted)
        if len(both) < 2:  # a segmenter that found (almost) no lesion: nothing to agree on, not an error of the run
            return {"cases": len(both), "features": 0,
                    "note": f"no ICC: {len(both)} patient(s) with features from both the manual and the predicted "
                            f"mask (an empty mask has none); see {out / 'predicted' / EXTRACTION_LOG}"}
        report, _ = run_icc(manual / FEATURES, out / "predicted" / FEATURES, out / "icc" / ICC, model="2,1")
        return {"cases": report.n_cases, "features": len(report.per_feature)}

    return stage.run(work)


def _extracted(result: Any) -> set[str]:
    """The patients whose features an extraction got (fresh or from its cache)."""
    log = result.log
    return set(log.loc[log["status"] != "failed", "patient_id"].astype(str))


SPLIT_STAGE = "ct-study-split"


def ct_study_manifest(manifest: str | Path, out: Path, config: Any) -> StageOutcome:
    """The CT study's manifest with one patient-level split that every model shares (the manifest's own kept).

    Stratified by whether a patient has a lesion, so the lesion-free patients a clinical cohort
    holds are in every split; the detectors and segmenters then train and test on the same patients.
    """
    import numpy as np
    import SimpleITK as sitk

    from osteomet.data.manifest import with_absolute_paths, write_manifest
    from osteomet.data.splits import assign_splits, check_no_leakage
    from osteomet.layout import MANIFEST

    cohort = read_manifest(manifest, kind="ct", require=("lesion_mask",))
    stage = Stage(SPLIT_STAGE, out, settings={"split": config.split.model_dump(mode="json"), "seed": config.seed},
                  inputs=manifest_inputs(cohort, manifest), outputs=(MANIFEST,))

    def work() -> dict[str, Any]:
        frame = cohort.to_frame()
        frame["label"] = [int(np.any(sitk.GetArrayFromImage(sitk.ReadImage(str(r.lesion_mask))) > 0))
                          for r in cohort]
        frame["split"] = assign_splits(frame, ratios=config.split.ratios, seed=config.seed, given_column="split")
        check_no_leakage(frame, kind="ct")
        lacking = [f"{split!r} ({int((frame['split'] == split).sum())} patient(s))" for split in ("train", "val")
                   if not frame.loc[frame["split"] == split, "label"].any()]
        if lacking:  # the models learn lesions on train and choose thresholds and epochs on val
            raise InputError(f"{manifest}: no patient with a lesion in split {' and '.join(lacking)} "
                             f"({int(frame['label'].sum())} of {len(frame)} patients have lesions); add patients with "
                             f"lesions, set the manifest's split column, or change split.ratios in the CT study config")
        write_manifest(with_absolute_paths(frame.drop(columns="label"), "ct"), out / MANIFEST, kind="ct",
                       overwrite=True)
        return {"splits": {k: int(v) for k, v in frame["split"].value_counts().items()},
                "with_lesions": int(frame["label"].sum())}

    return stage.run(work)


def run_ct(manifest: Path, run: Path, config: Any = "tiny", *, device: str | None = None,
           models: dict[str, Any] | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole CT study in ``run``'s ``ct/`` folders; returns per-stage times and the headline numbers.

    ``config`` is a :class:`~osteomet.pipeline.ct_study.CTStudyConfig`, a preset name or a ``ct_study.yaml``;
    ``models`` replaces its detection or segmentation training settings with config objects (the demo's).
    Every segmenter's masks get the per-lesion analysis and the radiomics ICC.
    """
    from osteomet.layout import open_run_dir
    from osteomet.pipeline.ct_study import load_ct_study_config
    from osteomet.utils.run_lock import run_lock

    if not hasattr(config, "model_config_of"):
        config = load_ct_study_config(config)
    device = device or config.device
    if config.nnunet.enabled:  # nnU-Net installed, its trainer, planner and device known: before any stage
        config.nnunet.check(device)
    models = dict(models or {})
    for task in ("detection", "segmentation"):
        if task not in models and getattr(config, task).enabled:
            models[task] = config.model_config_of(task)
    layout = RunLayout(open_run_dir(run, kind="ct"))
    with run_lock(layout.root):  # one process at a time in a run directory
        return _ct_stages(manifest, layout, config, models, device, log)


def _ct_stages(manifest: Path, layout: RunLayout, config: Any, models: dict[str, Any], device: str | None,
               log: Callable[[str], None]) -> dict[str, Any]:
    """:func:`run_ct`'s stages in order, under the run directory's lock."""
    from osteomet.ct.lesions.cohort import LesionSettings
    from osteomet.layout import MANIFEST
    from osteomet.pipeline.ct_lesions import analyse_lesion_cohort

    det, seg = layout.ct_detection, layout.ct_segmentation
    timed = StageTimer(log)
    stages = timed.stages

    timed("ct split", lambda: ct_study_manifest(manifest, layout.ct_split, config))
    study = layout.ct_split / MANIFEST
    if config.detection.enabled:
        timed("ct detection train", lambda: train_ct_models("detection", study, det / "model",
                                                            models["detection"], device=device,
                                                            jobs=config.jobs, scheduler=config.scheduler))
        timed("ct detection predict", lambda: predict_ct_detection(study, det / "model", det / "predictions",
                                                                   device=device))
    if config.segmentation.enabled:
        timed("ct segmentation train", lambda: train_ct_models("segmentation", study, seg / "model",
                                                               models["segmentation"], device=device,
                                                               jobs=config.jobs, scheduler=config.scheduler))
        timed("ct segmentation predict", lambda: predict_ct_segmentation(study, seg / "model", seg / "predictions",
                                                                         device=device))
    if config.nnunet.enabled:  # imported into seg/predictions/nnunet: a segmenter like the others from here on
        from osteomet.pipeline.ct_nnunet import run_ct_nnunet

        run_ct_nnunet(study, layout, config.nnunet, seed=config.seed, device=device, timed=timed, log=log)
    if config.segmentation.enabled or config.nnunet.enabled:
        timed("ct segmentation compare", lambda: compare_ct_segmenters(seg / "predictions",
                                                                       seg / "predictions" / "comparison"))
        lesions = LesionSettings(cluster_gap=config.lesions.cluster_gap,
                                 diffuse_fraction=config.lesions.diffuse_fraction,
                                 n_resamples=config.lesions.n_resamples, seed=config.seed)
        for architecture, masks in segmenter_masks(seg / "predictions").items():
            if config.lesions.enabled:
                timed(f"ct lesions {architecture}", lambda: analyse_lesion_cohort(
                    study, layout.ct_lesions_of(architecture), settings=lesions, predictions=masks))
            if config.icc.enabled:
                timed(f"ct radiomics icc {architecture}", lambda: radiomics_icc(
                    study, masks, layout.ct_icc_of(architecture), params=config.icc.params,
                    manual=layout.ct_icc / "manual", jobs=config.jobs, scheduler=config.scheduler))
        if config.lesions.enabled and (any(not stages[name]["skipped"] for name in stages
                                           if name.startswith("ct lesions "))
                                       or not (layout.ct_lesions / "figures").is_dir()):
            from osteomet.ct.lesions.figures import write_lesion_figures

            start = time.perf_counter()
            written = write_lesion_figures(layout)  # drawn once here, so the report reads PNGs, not volumes
            log(f"ct lesion figures: {len(written)} written ({time.perf_counter() - start:.1f} s)")
    segmenting = config.segmentation.enabled or config.nnunet.enabled
    if config.detection.enabled or segmenting:
        from osteomet.ct.patient_rules import PatientRuleSettings
        from osteomet.pipeline.ct_rules import choose_ct_patient_rules

        # a patient-level call for every model, chosen on validation: a clean scan must come back clean
        timed("ct patient rules", lambda: choose_ct_patient_rules(
            study, det / "predictions" if config.detection.enabled else None,
            seg / "predictions" if segmenting else None, layout.ct_rules,
            detection_model=det / "model" if config.detection.enabled else None,
            settings=PatientRuleSettings(n_resamples=config.lesions.n_resamples, seed=config.seed)))
    return {"stages": stages, **ct_headline(layout)}


def segmenter_masks(predictions: Path) -> dict[str, Path]:
    """Each segmenter's predicted masks (``<architecture>/masks``) in a segmentation predictions folder."""
    return {p.parent.name: p for p in sorted(predictions.glob("*/masks")) if p.is_dir()}


def ct_headline(layout: RunLayout) -> dict[str, Any]:
    """Test Dice of each segmenter, slice AUC of each detector, lesion-level sensitivity: what the demo prints."""
    out: dict[str, Any] = {}
    seg = layout.ct_segmentation / "predictions"
    for metrics in sorted(seg.glob("*/metrics.csv")):
        table = pd.read_csv(metrics)
        test = table[table["split"] == "test"] if "split" in table else table
        out.setdefault("dice", {})[metrics.parent.name] = round(float(test["dice"].mean()), 3)
    for metrics in sorted((layout.ct_detection / "predictions").glob("*/metrics.csv")):
        table = pd.read_csv(metrics)
        row = table[(table["metric"] == "auc") & (table.get("level", "slice") == "slice") & (table["split"] == "test")]
        if len(row):
            values = [float(row[c].iloc[0]) for c in ("estimate", "ci_low", "ci_high")]
            # no CI (too few test patients for a cluster bootstrap) is None, which JSON can hold
            out.setdefault("slice_auc", {})[metrics.parent.name] = [None if math.isnan(v) else round(v, 3) for v in values]
    rules = layout.ct_rules / "patient_metrics.csv"
    if rules.is_file():  # the patient-level calls on the test patients, under each model's chosen rule
        table = pd.read_csv(rules)
        chosen = table[(table["rule"] == "chosen") & (table["split"] == "test")]
        for _, row in chosen.iterrows():
            if row["metric"] in ("patient_sensitivity", "patient_specificity", "fp_lesions_per_lesion_free_patient"):
                values = [None if pd.isna(row[c]) else round(float(row[c]), 3) for c in ("estimate", "ci_low", "ci_high")]
                out.setdefault(row["metric"], {})[row["model"]] = values
    for architecture, folder in layout.ct_lesion_folders().items():
        table = pd.read_csv(folder / METRICS) if (folder / METRICS).is_file() else None
        if table is None or "metric" not in table:
            continue
        sens = table[table["metric"].astype(str).str.contains("sensitivity")]
        if len(sens) and "estimate" in sens:
            out.setdefault("lesion_sensitivity", {})[architecture] = round(float(sens["estimate"].iloc[0]), 3)
    return out
