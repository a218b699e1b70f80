"""``osteomet predict mri``: one new patient through a finished study's models.

The *bundle* is the run directory of ``osteomet run mri``: ``run.json`` (format, version, the
study config), the UNETR and 3D-ResNet state dicts (loaded with ``weights_only=True``), the
XGBoost models as JSON with their feature lists, the preprocessing and radiomics settings in
each stage's ``settings.yaml``, and the decision threshold in ``evaluation/metrics.csv``.
Nothing is unpickled. The new patient goes through the same stage functions as the study's
patients did (preprocessing, masks, ROI crop, radiomics, deep features), so the probability
``predict`` gives a study patient equals the one the study's prediction table holds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

from osteomet import __version__
from osteomet.config import recorded_settings
from osteomet.errors import InputError, MissingInputError
from osteomet.layout import (
    DEEP_FEATURES,
    FEATURES,
    MANIFEST,
    METRICS,
    MODEL_DIR,
    RADIOMICS_PARAMS,
    RESULT,
    SETTINGS,
    WINNER,
    RunLayout,
    open_run_dir,
)
from osteomet.pipeline.run_mri import RUN_FORMAT
from osteomet.pipeline.study import StudyConfig
from osteomet.utils.files import read_json, write_json_atomic, write_text_atomic

CLINICAL = ("age", "psa", "gleason", "isup", "hematuria", "leukocyturia")


@dataclass(frozen=True)
class MRIBundle:
    """What ``predict`` needs from a run directory, checked once."""

    layout: RunLayout
    config: StudyConfig
    threshold: float
    version: str

    @classmethod
    def open(cls, run: str | Path) -> "MRIBundle":
        layout = RunLayout(Path(run))
        record = read_json(layout.run_record)
        if record is None:
            raise MissingInputError(f"{run}: not a finished `osteomet run mri` directory (no run.json); run the study "
                                    f"first or give its run directory")
        if record.get("format") != RUN_FORMAT:
            raise InputError(f"{layout.run_record}: bundle format {record.get('format')!r} is not {RUN_FORMAT!r}; "
                             f"this osteomet ({__version__}) cannot read it")
        version = str(record.get("versions", {}).get("osteomet", "?"))
        if version.split(".")[:2] != __version__.split(".")[:2]:
            raise InputError(f"{run}: the models were trained with osteomet {version}, this is osteomet {__version__}; "
                             f"install osteomet=={version} to use them, or rerun the study with this version")
        config = StudyConfig.model_validate(record["config"])
        if config.deep.pca:
            raise InputError(f"{run}: the study reduced its deep features with PCA, which `predict` cannot apply yet; "
                             f"rerun the study with deep.pca: null")
        needed = [layout.model(m) / MODEL_DIR for m in ("clinical", "radiomics", "fusion")] + \
                 [layout.deep_grid / WINNER, layout.radiomics / SETTINGS, layout.evaluation / METRICS]
        if config.segmentation.masks == "unetr":
            needed.append(layout.segmentation_model / SETTINGS)
        missing = [str(p) for p in needed if not p.exists()]
        if missing:
            raise MissingInputError(f"{run}: the study is incomplete, missing {', '.join(missing[:4])}; rerun "
                                    f"`osteomet run mri` to finish it")
        metrics = pd.read_csv(layout.evaluation / METRICS)
        fusion = metrics.loc[metrics["model"] == "fusion", "threshold"].dropna()
        if fusion.empty:
            raise InputError(f"{layout.evaluation / 'metrics.csv'}: no threshold of the fusion model")
        return cls(layout, config, float(fusion.iloc[0]), version)


def parse_clinical(text: str | None) -> dict[str, float]:
    """``age=71,psa=40,gleason=8`` -> values; unknown names and non-numbers are refused."""
    values: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in (text or "").split(","))):
        name, _, value = item.partition("=")
        name = name.strip().lower()
        if name not in CLINICAL:
            raise InputError(f"--clinical: unknown variable {name!r}; use {', '.join(CLINICAL)}")
        try:
            values[name] = float(value)
        except ValueError:
            raise InputError(f"--clinical: {name}={value!r} is not a number") from None
    return values


def _new_manifest(out: Path, patient_id: str, images: Mapping[str, str | Path], mask: str | Path | None,
                  clinical: Mapping[str, float], centre: str | None) -> Path:
    from osteomet.data.manifest import write_manifest

    row: dict[str, Any] = {"patient_id": patient_id, "centre": centre, **{k: str(Path(v).resolve()) for k, v in
                                                                          images.items()},
                           "mask": str(Path(mask).resolve()) if mask else None}
    row.update({name: clinical.get(name) for name in CLINICAL})
    for name, path in images.items():
        if not Path(path).exists():
            raise MissingInputError(f"--{name} {path}: no such file or DICOM folder")
    return write_manifest(pd.DataFrame([row]), out / MANIFEST, kind="mri", overwrite=True)


def predict_mri(run: str | Path, out: str | Path, *, t2: str | Path, dwi: str | Path, adc: str | Path,
                mask: str | Path | None = None, clinical: Mapping[str, float] | None = None,
                patient_id: str = "patient", centre: str | None = None, device: str | None = None,
                log: Callable[[str], None] = print) -> dict[str, Any]:
    """Segmentation, ROI crop, radiomics, deep features, each model's probability and the fused decision."""
    from osteomet.data.manifest import read_manifest
    from osteomet.data.masks import auto_mask_path
    from osteomet.models.clinical import ClinicalModel
    from osteomet.models.fusion import FusionModel, fusion_inputs
    from osteomet.models.radiomics import RadiomicsModel
    from osteomet.mri.classifier.data import roi_patients
    from osteomet.mri.classifier.features import deep_features
    from osteomet.mri.classifier.predict import predict_patients
    from osteomet.pipeline import preprocess, radiomics, segmentation
    from osteomet.pipeline.deep import gradcam_examples
    from osteomet.pipeline.rigour import predict_harmonizers
    from osteomet.radiomics.features import read_feature_table
    from osteomet.stage import refuse_overwriting_inputs

    bundle = MRIBundle.open(run)
    config, layout = bundle.config, bundle.layout
    combat, combat_deep, harmonization = predict_harmonizers(layout, centre)
    clinical = dict(clinical or {})
    out = Path(out)
    refuse_overwriting_inputs([out], [t2, dwi, adc, *([mask] if mask else []), layout.root])
    open_run_dir(out, kind="predict-mri")
    work = out / "work"
    work.mkdir(exist_ok=True)
    seconds: dict[str, float] = {}

    def timed(name: str, step: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        result = step()
        seconds[name] = round(time.perf_counter() - start, 2)
        log(f"{name}: {seconds[name]:.1f} s")
        return result

    if mask is None and config.segmentation.masks != "unetr":
        raise InputError(f"{run}: the study used the manifest's masks (segmentation.masks: manifest), so give the "
                         f"tumour mask with --mask")
    manifest = _new_manifest(work, patient_id, {"t2": t2, "dwi": dwi, "adc": adc}, mask, clinical, centre)
    seg_config = config.segmentation.config  # the study's preprocessing grid (seg_size) and ROI size
    timed("preprocess", lambda: preprocess.preprocess_mri(manifest, work / "preprocess", seg_config=seg_config))
    segdir, roi = None, work / "preprocess"
    if mask is None:
        timed("segmentation", lambda: segmentation.predict_segmentation(
            work / "preprocess", manifest, layout.segmentation_model, work / "segmentation", device=device))
        segdir, roi = work / "segmentation", work / "roi"
        timed("roi", lambda: preprocess.preprocess_mri(manifest, roi, seg_config=seg_config, segdir=segdir))
    params = work / RADIOMICS_PARAMS
    write_text_atomic(params, _yaml((recorded_settings(layout.radiomics) or {})["params"]))
    _, extraction = timed("radiomics", lambda: radiomics.extract_features(manifest, work / "radiomics",
                                                                        params=str(params), segdir=segdir))
    cohort = read_manifest(manifest, kind="mri")
    frame = cohort.to_frame()
    patients = roi_patients(roi, cohort, segdir)
    if not bool(patients["has_roi"].iloc[0]):
        raise InputError(f"{patient_id}: no tumour ROI could be cut (the mask is empty); check the images or give "
                         f"a mask with --mask")
    if extraction.failures:
        where = f"the automatic mask {auto_mask_path(segdir, patient_id)}" if segdir is not None else f"the mask {mask}"
        raise InputError(f"{patient_id}: radiomics could not be extracted from {where}: {extraction.failures[0][1]}. "
                         f"Review the mask (e.g. in 3D Slicer) and predict again with --mask")
    features = read_feature_table(work / "radiomics" / FEATURES)
    if combat is not None:
        features = combat.apply(features, [centre])

    explained: dict[str, tuple[Any, pd.DataFrame]] = {}  # model and its inputs, for the SHAP contributions

    def score() -> dict[str, float]:
        explained["clinical"] = (ClinicalModel.load(layout.model("clinical") / MODEL_DIR), frame)
        explained["radiomics"] = (RadiomicsModel.load(layout.model("radiomics") / MODEL_DIR), features)
        probs = {name: float(model.predict_proba(X)[0, 1]) for name, (model, X) in explained.items()}
        deep = predict_patients(layout.deep_grid, roi, patients, frame.assign(label=None), device=device)
        probs["deep"] = float(deep["prob"].iloc[0])
        table, _ = deep_features(layout.deep_grid, roi, patients, device=device)
        if combat_deep is not None:
            table = combat_deep.apply(table, [centre])
        table.to_parquet(work / DEEP_FEATURES, index=False)
        inputs = fusion_inputs(frame, radiomics=features, deep=table, predictions={
            name: pd.DataFrame({"patient_id": [patient_id], "prob": [p]}) for name, p in probs.items()})
        explained["fusion"] = (FusionModel.load(layout.model("fusion") / MODEL_DIR), inputs)
        probs["fusion"] = float(explained["fusion"][0].predict_proba(inputs)[0, 1])
        return probs

    probs = timed("models", score)
    timed("grad-cam", lambda: gradcam_examples(layout.deep_grid, roi, manifest, out / "gradcam",
                                               patient_ids=[patient_id], device=device))
    files = {"gradcam_t2": str(out / "gradcam" / "t2" / f"{patient_id}.nii.gz"),
             "gradcam_png": str(out / "gradcam" / "png" / f"{patient_id}.png")}
    if segdir is not None:
        import shutil

        target = out / f"{patient_id}_mask.nii.gz"
        shutil.copyfile(auto_mask_path(segdir, patient_id), target)
        files["mask"] = str(target)
    explanations = None
    if config.explanations.enabled:
        from osteomet.pipeline.explain import explain_patient

        explanations = timed("explanations", lambda: explain_patient(
            explained, patient_id, config.explanations.top_k, out / "explanations.png"))
        files["explanations_png"] = str(out / "explanations.png")
    missing = [name for name in CLINICAL if name not in clinical]
    result = {"patient_id": patient_id, "probability": probs["fusion"], "threshold": bundle.threshold,
              "decision": "bone metastasis" if probs["fusion"] >= bundle.threshold else "no bone metastasis",
              "models": probs, "clinical": clinical, "missing_clinical": missing,
              "mask_source": "given" if mask else "unetr", "centre": centre, "harmonization": harmonization,
              "files": files, "seconds": seconds,
              "run": str(layout.root.resolve()), "osteomet": __version__, "trained_with": bundle.version,
              "explanations": explanations}
    write_json_atomic(out / RESULT, result)
    write_text_atomic(out / "result.md", render_result(result))
    return result


def _yaml(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, sort_keys=False)


def render_result(result: dict[str, Any]) -> str:
    probs = result["models"]
    lines = [f"# osteomet prediction: {result['patient_id']}", "",
             f"**{result['decision']}**: fusion probability {result['probability']:.3f} "
             f"(study threshold {result['threshold']:.3f})", "", "| model | probability |", "|---|---|"]
    lines += [f"| {name} | {value:.3f} |" for name, value in probs.items()]
    lines += ["", f"- mask: {result['mask_source']}", f"- harmonization: {result.get('harmonization', 'off')}",
              f"- missing clinical values: {', '.join(result['missing_clinical']) or 'none'}",
              f"- files: {', '.join(f'{k}: {v}' for k, v in result['files'].items())}",
              f"- seconds per stage: {result['seconds']}",
              f"- models from {result['run']} (osteomet {result['trained_with']})", ""]
    if result.get("explanations"):
        from osteomet.pipeline.explain import explanation_markdown

        lines += explanation_markdown(result["explanations"])
    return "\n".join(lines)
