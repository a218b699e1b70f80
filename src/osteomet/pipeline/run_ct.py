"""The CT study as stages: slice detection, lesion segmentation, per-lesion analysis, radiomics ICC.

Each step is a stage (skipped when its manifest, settings and upstream checkpoints are
unchanged) in the run directory's ``ct/`` folders::

    ct/detection/model, ct/detection/predictions        (slice detectors: train, predict + Grad-CAM)
    ct/segmentation/model, ct/segmentation/predictions  (MONAI segmenters: train, masks + comparison)
    ct/lesions                                          (predicted lesions against the manifest's masks)
    ct/icc                                              (radiomics of predicted vs manual masks, ICC by class)
"""

from __future__ import annotations

import math
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from osteomet.data.manifest import read_manifest
from osteomet.layout import CHECKPOINTS, FEATURES, ICC, METRICS, RunLayout
from osteomet.pipeline.inputs import manifest_inputs
from osteomet.stage import Stage, StageOutcome
from osteomet.utils.progress import progress_bars


def _checkpoints(model: Path) -> list[Path]:
    return sorted(model.glob("*/checkpoints/best.pt"))


def train_ct_models(task: str, manifest: Path, out: Path, settings, *, device: str | None = None) -> StageOutcome:
    """Train every architecture of ``settings`` (``task``: detection or segmentation) as one stage."""
    from osteomet.pipeline.ct_models import prepare_ct_run, task_trainer, train_each_architecture

    _, train = task_trainer(task)
    cohort = read_manifest(manifest, kind="ct", require=("lesion_mask",))
    stage = Stage(f"ct-{task}-train", out, settings=settings, inputs=manifest_inputs(cohort, manifest))
    # an interrupted stage continues the architectures it had started; a changed one starts them over
    resume = stage.state() == "interrupted"
    started = [p.name for p in out.iterdir() if (p / CHECKPOINTS).is_dir()] if out.is_dir() else []

    def work() -> dict[str, Any]:
        root, chosen = prepare_ct_run(manifest, out, settings, None, None)
        results = train_each_architecture(root, out, chosen, partial(train, resume=resume), device)
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
    from osteomet.ct.segmentation.compare import compare_segmentations
    from osteomet.ct.segmentation.infer import predict_segmentation

    cohort = read_manifest(manifest, kind="ct")
    stage = Stage("ct-segmentation-predict", out, settings={},
                  inputs={**manifest_inputs(cohort, manifest), "weights": _checkpoints(model)})

    def work() -> dict[str, Any]:
        with progress_bars(("slices", len(cohort)), ("segment", len(cohort))) as (cached, segmented):
            table = predict_segmentation(cohort, model, out, device=device, on_cached=cached, progress=segmented)
        tested = table.dropna(subset=["dice"]) if "dice" in table else table.iloc[0:0]
        if (tested["split"] == "test").any():
            compare_segmentations(tested, out / "comparison", split="test")
        return {"patients": int(table["patient_id"].nunique()),
                "mean_test_dice": float(tested.loc[tested["split"] == "test", "dice"].mean())
                if len(tested) else None}

    return stage.run(work)


def mask_folder(predictions: Path) -> Path:
    """The masks of the first architecture in a segmentation predictions folder."""
    folders = sorted(p for p in predictions.glob("*/masks") if p.is_dir())
    if not folders:
        from osteomet.errors import MissingInputError

        raise MissingInputError(f"{predictions}: no <architecture>/masks folder; run the segmentation first")
    return folders[0]


def radiomics_icc(manifest: Path, masks: Path, out: Path, *, params: str = "tiny") -> StageOutcome:
    """Features from the manual and the predicted lesion masks, and their ICC(2,1) by feature class."""
    from osteomet.pipeline.radiomics import extract_features
    from osteomet.radiomics.reproducibility import run_icc

    extract_features(manifest, out / "manual", params=params)
    extract_features(manifest, out / "predicted", params=params, masks=masks)
    stage = Stage("ct-icc", out / "icc", settings={"model": "2,1"},
                  inputs={"manual": out / "manual" / FEATURES,
                          "predicted": out / "predicted" / FEATURES}, outputs=(ICC,))

    def work() -> dict[str, Any]:
        report, _ = run_icc(out / "manual" / FEATURES, out / "predicted" / FEATURES,
                            out / "icc" / ICC, model="2,1")
        return {"cases": report.n_cases, "features": len(report.per_feature)}

    return stage.run(work)


def run_ct(manifest: Path, run: Path, *, detection: Any = "tiny", segmentation: Any = "tiny",
           device: str | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """The whole CT study in ``run``'s ``ct/`` folders; returns per-stage times and the headline numbers.

    ``detection`` and ``segmentation`` are presets, YAML files or config objects.
    """
    from osteomet.ct.detection.config import load_detection_config
    from osteomet.ct.lesions.cohort import LesionSettings
    from osteomet.ct.segmentation.config import load_segmentation_config
    from osteomet.pipeline.ct_lesions import analyse_lesion_cohort

    layout = RunLayout(run)
    det, seg = layout.ct_detection, layout.ct_segmentation
    stages: dict[str, dict[str, Any]] = {}

    def timed(name: str, step: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        outcome = step()
        stages[name] = {"seconds": round(time.perf_counter() - start, 2), "skipped": bool(outcome.skipped)}
        log(f"{name}: {outcome.how} ({stages[name]['seconds']:.1f} s)")
        return outcome

    timed("ct detection train", lambda: train_ct_models("detection", manifest, det / "model",
                                                        _config(detection, load_detection_config), device=device))
    timed("ct detection predict", lambda: predict_ct_detection(manifest, det / "model", det / "predictions",
                                                               device=device))
    timed("ct segmentation train", lambda: train_ct_models("segmentation", manifest, seg / "model",
                                                           _config(segmentation, load_segmentation_config),
                                                           device=device))
    timed("ct segmentation predict", lambda: predict_ct_segmentation(manifest, seg / "model", seg / "predictions",
                                                                     device=device))
    masks = mask_folder(seg / "predictions")
    timed("ct lesions", lambda: analyse_lesion_cohort(manifest, layout.ct_lesions, settings=LesionSettings(),
                                                      predictions=masks))
    timed("ct radiomics icc", lambda: radiomics_icc(manifest, masks, layout.ct_icc))
    return {"stages": stages, **ct_headline(layout)}


def _config(value: Any, loader: Callable[[Any], Any]) -> Any:
    return loader(value) if value is None or isinstance(value, (str, Path)) else value


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
    lesion_metrics = layout.ct_lesions / METRICS
    if lesion_metrics.is_file():
        table = pd.read_csv(lesion_metrics)
        sens = table[table["metric"].astype(str).str.contains("sensitivity")] if "metric" in table else table.iloc[0:0]
        if len(sens):
            out["lesion_sensitivity"] = round(float(sens["estimate"].iloc[0]), 3) if "estimate" in sens else None
    return out
