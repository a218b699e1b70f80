"""``osteomet predict mri``: one new patient through a finished study's models.

The *bundle* is the run directory of ``osteomet run mri``: ``run.json`` (format, version, the
study config), the UNETR and 3D-ResNet state dicts (loaded with ``weights_only=True``), the
XGBoost models as JSON with their feature lists, the preprocessing and radiomics settings in
each stage's ``settings.yaml``, the decision threshold in ``evaluation/metrics.csv``, and each
model's conformal calibration (``trust/<model>/conformal.json``, and ``recalibration.json`` when the
study recalibrated), so every probability is reported with its prediction set ({BM}, {no BM}
or {no BM, BM} = uncertain) at the study's confidence, and the applicability domain and
missingness record (``applicability/domain.json``, ``missingness.json``), so every result says
whether the patient is ``within`` or ``outside`` what the study was trained on (with the reasons
in words) and how far each missing clinical value could move it. Nothing is unpickled. The new patient goes through the same stage functions as the study's
patients did (preprocessing, masks, ROI crop, radiomics, deep features), so the probability
``predict`` gives a study patient equals the one the study's prediction table holds.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import pandas as pd

from osteomet import __version__
from osteomet.config import recorded_settings
from osteomet.errors import InputError, MissingInputError
from osteomet.layout import (
    CONFORMAL,
    DEEP_FEATURES,
    DOMAIN,
    FEATURES,
    INDEX,
    MANIFEST,
    METRICS,
    MISSINGNESS,
    MODEL_DIR,
    RADIOMICS_PARAMS,
    RECALIBRATION,
    RESULT,
    SETTINGS,
    STAGE_RECORD,
    WINNER,
    RunLayout,
    open_run_dir,
)
from osteomet.pipeline.run_mri import MODELS, RUN_FORMAT
from osteomet.pipeline.study import StudyConfig
from osteomet.utils.files import json_ready, read_json, write_json_atomic, write_text_atomic

CLINICAL = ("age", "psa", "gleason", "isup", "hematuria", "leukocyturia")
IMAGES = ("t2", "dwi", "adc")


@dataclass(frozen=True)
class MRIBundle:
    """What ``predict`` needs from a run directory, checked once."""

    layout: RunLayout
    config: StudyConfig
    threshold: float
    version: str
    #: the clinical, radiomics and fusion models, loaded (and so checked) when the bundle is opened
    models: dict[str, Any] = field(default_factory=dict)
    #: each model's conformal calibration (:class:`~osteomet.models.conformal.MondrianConformal`); empty for a
    #: study without one (``trust_note`` says why)
    conformal: dict[str, Any] = field(default_factory=dict)
    #: each model's recalibration (:class:`~osteomet.models.recalibration.LogisticRecalibration`) when the study
    #: fitted one; a model whose fit was refused has its reason in ``recalibration_notes``
    recalibration: dict[str, Any] = field(default_factory=dict)
    recalibration_notes: dict[str, str] = field(default_factory=dict)
    trust_note: str | None = None
    #: the study's applicability domain (:class:`~osteomet.models.applicability.ApplicabilityDomain`) and its
    #: training cohort's missingness (:class:`~osteomet.models.missing_values.MissingnessRecord`); None for a study
    #: without them (``applicability_note`` says why)
    domain: Any = None
    missingness: Any = None
    applicability_note: str | None = None

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
        try:
            metrics = pd.read_csv(layout.evaluation / METRICS)
            fusion = pd.to_numeric(metrics.loc[metrics["model"] == "fusion", "threshold"], errors="coerce").dropna()
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, KeyError) as exc:
            raise InputError(f"{layout.evaluation / METRICS}: damaged or edited ({type(exc).__name__}: {exc}); restore "
                             f"it, or delete {layout.evaluation} and rerun `osteomet run mri` to write it again") from None
        if fusion.empty:
            raise InputError(f"{layout.evaluation / 'metrics.csv'}: no threshold of the fusion model")
        models = _load_models(layout)
        conformal, recalibration, notes, note = _load_trust(layout, config)
        domain, missingness, applicability = _load_applicability(layout, config)
        return cls(layout, config, float(fusion.iloc[0]), version, models, conformal, recalibration, notes, note,
                   domain=domain, missingness=missingness, applicability_note=applicability)


def _load_applicability(layout: RunLayout, config: StudyConfig) -> tuple[Any, Any, str | None]:
    """The bundle's applicability domain and missingness record, checked when the bundle is opened.

    A study run before osteomet had them (no finished ``applicability/`` stage), or with
    ``applicability.enabled: false``, gives none and a note saying so: its probabilities are still reported.
    """
    from osteomet.models.applicability import ApplicabilityDomain
    from osteomet.models.missing_values import MissingnessRecord

    if not config.applicability.enabled:
        return None, None, "not assessed: the study ran with applicability.enabled: false"
    record = read_json(layout.applicability / STAGE_RECORD) or {}
    if record.get("status") != "complete":
        return None, None, (f"not assessed: this study has no applicability domain ({layout.applicability} is "
                            f"missing or unfinished; studies run before osteomet had one lack it); rerun "
                            f"`osteomet run mri` on the study to add it")
    return (ApplicabilityDomain.load(layout.applicability / DOMAIN),
            MissingnessRecord.load(layout.applicability / MISSINGNESS), None)


def applicability_result(bundle: MRIBundle, values: Mapping[str, Any] | None, features: Mapping[str, pd.DataFrame],
                         error: str | None = None) -> tuple[str, list[str], dict[str, Any]]:
    """The patient against the study's domain: ``(verdict, reasons, details)``; verdict ``within``, ``outside``
    or ``not assessed`` (no domain in the bundle, or the images could not be measured: the note says why)."""
    from osteomet.pipeline.applicability import patient_applicability

    if bundle.domain is None:
        return "not assessed", [], {"note": bundle.applicability_note}
    if values is None:
        return "not assessed", [], {"note": f"not assessed: the patient's images could not be measured ({error})"}
    found = patient_applicability(bundle.domain, values, features)
    details = {"note": None, "checks": found["checks"], "failed": found["groups"],
               "not_measured": found["not_measured"], "distances": found["distances"],
               "fitted_on": bundle.domain.n_train, "margin": bundle.domain.margin,
               "feature_quantile": bundle.domain.quantile, "measurements": dict(values)}
    return found["verdict"], found["reasons"], json_ready(details)


def missing_values_result(bundle: MRIBundle, clinical: Mapping[str, float],
                          explained: Mapping[str, tuple[Any, pd.DataFrame]]) -> dict[str, Any]:
    """Each missing clinical value's effect on the clinical and fusion probabilities over its plausible values.

    The fusion model is scored with the completed clinical values in its own inputs (``features``
    mode) and with the clinical model's probability of the completion (``probabilities`` mode).
    """
    from osteomet.models.missing_values import missing_value_effects

    if bundle.missingness is None:
        return {"note": bundle.applicability_note, "statements": []}
    clinical_model = explained["clinical"][0]
    fusion_model, inputs = explained["fusion"]

    def clinical_probs(rows: pd.DataFrame) -> Any:
        return clinical_model.predict_proba(rows)[:, 1]

    def fusion_probs(rows: pd.DataFrame) -> Any:
        table = pd.concat([inputs] * len(rows))
        for column in rows.columns:
            if column in table:
                table[column] = rows[column].to_numpy()
        if "prob:clinical" in table:
            table["prob:clinical"] = clinical_probs(rows)
        return fusion_model.predict_proba(table)[:, 1]

    effects = missing_value_effects(bundle.missingness, clinical, {"clinical": clinical_probs, "fusion": fusion_probs},
                                    shift=bundle.config.applicability.missing_shift)
    return json_ready({"note": None, **effects})


def _load_trust(layout: RunLayout, config: StudyConfig) -> tuple[dict[str, Any], dict[str, Any], dict[str, str],
                                                                  str | None]:
    """The bundle's conformal calibrations and recalibrations per model, checked when the bundle is opened.

    A study run before prediction sets existed (no finished ``trust/`` stage), or with
    ``conformal.enabled: false``, gives none and a note saying so: its probabilities are still reported.
    """
    from osteomet.models.conformal import MondrianConformal
    from osteomet.models.recalibration import LogisticRecalibration

    if not config.conformal.enabled:
        return {}, {}, {}, "no prediction sets: the study ran with conformal.enabled: false"
    record = read_json(layout.trust / STAGE_RECORD) or {}
    if record.get("status") != "complete":
        return {}, {}, {}, (f"no prediction sets: this study has no conformal calibration ({layout.trust} is missing "
                            f"or unfinished; studies run before osteomet had prediction sets lack it); rerun "
                            f"`osteomet run mri` on the study to add it")
    conformal = {name: MondrianConformal.load(layout.trust / name / CONFORMAL) for name in MODELS
                 if (layout.trust / name / CONFORMAL).is_file()}
    recalibration: dict[str, Any] = {}
    notes: dict[str, str] = {}
    if config.recalibration.enabled:
        fitted = (record.get("summary") or {}).get("models") or {}
        for name in MODELS:
            path = layout.trust / name / RECALIBRATION
            if path.is_file():
                recalibration[name] = LogisticRecalibration.load(path)
            else:
                notes[name] = ((fitted.get(name) or {}).get("recalibration") or {}).get(
                    "reason", f"no {RECALIBRATION} in {layout.trust / name}")
    return conformal, recalibration, notes, None


def trust_result(bundle: MRIBundle, probs: Mapping[str, float]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each model's prediction set (and recalibrated probability) for one patient: ``(conformal, recalibration)``.

    The set is computed from the model's own probability (recalibration with a positive slope
    keeps every patient's rank, so it would give the same set).
    """
    from osteomet.models.conformal import CLASS_NAMES, describe_set, set_names, verdict

    config = bundle.config
    conformal: dict[str, Any] = {"available": bool(bundle.conformal), "alpha": config.conformal.alpha,
                                 "confidence": round(1 - config.conformal.alpha, 10), "note": bundle.trust_note,
                                 "models": {}}
    for name, prob in probs.items():
        calibrator = bundle.conformal.get(name)
        if calibrator is None:
            continue
        members = calibrator.sets([prob])[0]
        p_values = calibrator.p_values([prob])[0]
        entry: dict[str, Any] = {"set": set_names(members), "text": describe_set(members),
                                 "verdict": verdict(members),
                                 "p_values": {CLASS_NAMES[c]: float(p_values[c]) for c in (0, 1)},
                                 "n_calibration": dict(zip(CLASS_NAMES, calibrator.counts))}
        short = [CLASS_NAMES[c] for c in (0, 1) if not calibrator.excludable()[c]]
        if short:
            entry["note"] = (f"too few calibration patients with {' and '.join(short)} to ever leave "
                             f"{'it' if len(short) == 1 else 'them'} out at this confidence")
        conformal["models"][name] = entry
    recalibration: dict[str, Any] = {"enabled": config.recalibration.enabled, "models": {}}
    if config.recalibration.enabled:
        for name, prob in probs.items():
            fitted = bundle.recalibration.get(name)
            if fitted is not None:
                recalibration["models"][name] = {"probability": float(fitted.apply([prob])[0]),
                                                 "intercept": fitted.intercept, "slope": fitted.slope}
            elif name in bundle.recalibration_notes:
                recalibration["models"][name] = {"probability": None, "reason": bundle.recalibration_notes[name]}
    return conformal, recalibration


def _load_models(layout: RunLayout) -> dict[str, Any]:
    """The bundle's XGBoost models, each checked against its feature list and the study's feature tables.

    Done when the bundle is opened, so a truncated model file or an edited feature list is
    refused (naming the file) before any of the new patient's work starts.
    """
    from osteomet.models.clinical import ClinicalModel
    from osteomet.models.fusion import DEEP, RADIOMICS, FusionModel
    from osteomet.models.radiomics import RadiomicsModel
    from osteomet.models.xgb import feature_mismatch

    models = {"clinical": ClinicalModel.load(layout.model("clinical") / MODEL_DIR),
              "radiomics": RadiomicsModel.load(layout.model("radiomics") / MODEL_DIR),
              "fusion": FusionModel.load(layout.model("fusion") / MODEL_DIR)}
    radiomics_table = layout.radiomics / FEATURES
    radiomics = _table_columns(radiomics_table)
    if radiomics is not None:  # a new patient's extraction, with the study's settings, has these columns
        models["radiomics"].check_columns(radiomics, table=f"the study's radiomics features ({radiomics_table})")
    fusion: FusionModel = models["fusion"]
    for prefix, table in ((RADIOMICS, radiomics_table), (DEEP, layout.deep_features / FEATURES)):
        columns = _table_columns(table)
        if columns is not None:
            expected = [f"{prefix}{c}" for c in columns]
            missing = [c for c in fusion.columns if c.startswith(prefix) and c not in set(expected)]
            if missing:
                raise feature_mismatch(fusion.source, missing, [c for c in expected if c not in set(fusion.columns)],
                                       f"the study's {prefix.rstrip(':')} features ({table})")
    return models


def _table_columns(path: Path) -> list[str] | None:
    """The feature columns of one of the study's Parquet tables (header only); None when absent or unreadable."""
    try:
        import pyarrow.parquet as pq

        return [c for c in pq.read_schema(path).names if c not in ("patient_id", "case_id", "error")]
    except Exception:  # the table itself is not needed to predict; only its column names are compared
        return None


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
        if not math.isfinite(values[name]):
            raise InputError(f"--clinical {name}={value.strip()}: not a finite number; leave {name} out when it is "
                             f"unknown (missing values are allowed and reported)")
    check_clinical(values)
    return values


def check_clinical(values: Mapping[str, float]) -> None:
    """The manifest's rules (ranges, whole numbers, yes/no, Gleason against ISUP) applied to ``--clinical``.

    Checked here so a bad value is reported as the option the user typed, not as a line of
    the internal manifest ``predict`` writes for the patient.
    """
    from pydantic import ValidationError

    from osteomet.data.manifest import ClinicalRecord

    unknown = [name for name, value in values.items() if not math.isfinite(value)]
    if unknown:
        raise InputError(f"clinical values must be finite numbers: {', '.join(unknown)} is not; leave a value out "
                         f"when it is unknown")
    try:
        ClinicalRecord(patient_id="patient", **{name: values[name] for name in CLINICAL if name in values})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            message = error["msg"].removeprefix("Value error, ")
            if error["loc"]:
                name = str(error["loc"][0])
                if error["type"] in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
                    message = "outside the range the study's manifests allow"
                problems.append(f"--clinical {name}={_number(values.get(name))}: {message} "
                                f"(allowed: {_allowed(name)})")
            else:
                given = ",".join(f"{k}={_number(values[k])}" for k in ("gleason", "isup") if k in values)
                problems.append(f"--clinical {given}: {message}")
        raise InputError("; ".join(problems)) from None


def _number(value: Any) -> str:
    """A value as the user typed it: 40 rather than 40.0, n/a for NaN or nothing."""
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    return f"{float(value):g}"


def _allowed(name: str) -> str:
    """The range the manifest accepts for a clinical variable, read off its schema."""
    from osteomet.data.manifest import ClinicalRecord

    if name in ("hematuria", "leukocyturia"):
        return "0 or 1"
    low = high = None
    low_op, high_op = ">=", "<="
    for rule in ClinicalRecord.model_fields[name].metadata:
        for attr, op in (("ge", ">="), ("gt", ">")):
            if getattr(rule, attr, None) is not None:
                low, low_op = getattr(rule, attr), op
        for attr, op in (("le", "<="), ("lt", "<")):
            if getattr(rule, attr, None) is not None:
                high, high_op = getattr(rule, attr), op
    whole = " (a whole number)" if name in ("gleason", "isup") else ""
    parts = [f"{name} {low_op} {low:g}" if low is not None else "", f"{name} {high_op} {high:g}" if high is not None else ""]
    return " and ".join(p for p in parts if p) + whole


def check_images(images: Mapping[str, str | Path], series: Mapping[str, str]) -> None:
    """Each image exists and, for a DICOM folder, names one series: refused before any work, naming the option."""
    from osteomet.data.dicom_series import describe_series, list_series
    from osteomet.data.images import image_format

    for name, path in images.items():
        path = Path(path)
        if not path.exists():
            raise MissingInputError(f"--{name} {path}: no such file or DICOM folder")
        uid = series.get(name)
        kind = image_format(path)
        if kind not in ("dicom", "dicom-file"):
            if uid:
                raise InputError(f"--{name}-series {uid}: --{name} {path} is not a DICOM folder, so there is no "
                                 f"series to choose; leave --{name}-series out")
            continue
        found = list_series(path if kind == "dicom" else path.parent)
        if not found:
            raise InputError(f"--{name} {path}: no DICOM series found in this folder")
        uids = [u for u, _, _ in found]
        if uid and uid not in uids:
            raise InputError(f"--{name}-series {uid}: no such series in {path}; it holds {describe_series(found)}")
        if not uid and len(found) > 1:
            raise InputError(f"--{name} {path}: {len(found)} DICOM series in one folder: {describe_series(found)}; "
                             f"choose one with --{name}-series <SeriesInstanceUID>")


def _new_manifest(out: Path, patient_id: str, images: Mapping[str, str | Path], mask: str | Path | None,
                  clinical: Mapping[str, float], centre: str | None, series: Mapping[str, str] | None = None) -> Path:
    """The one-patient manifest the study's stage functions read (series UIDs in ``<image>_series_uid``)."""
    from osteomet.data.manifest import write_manifest

    row: dict[str, Any] = {"patient_id": patient_id, "centre": centre, **{k: str(Path(v).resolve()) for k, v in
                                                                          images.items()},
                           "mask": str(Path(mask).resolve()) if mask else None}
    row.update({name: clinical.get(name) for name in CLINICAL})
    row.update({f"{name}_series_uid": uid for name, uid in (series or {}).items() if uid})
    for name, path in images.items():
        if not Path(path).exists():
            raise MissingInputError(f"--{name} {path}: no such file or DICOM folder")
    return write_manifest(pd.DataFrame([row]), out / MANIFEST, kind="mri", overwrite=True)


def _check_preprocessed(folder: Path, patient_id: str, mask: str | Path | None) -> None:
    """The patient's own preprocessing error (``index.csv``), not a later stage's "not in the cache" symptom."""
    index = pd.read_csv(folder / INDEX, dtype={"patient_id": str})
    row = index[index["patient_id"] == patient_id]
    if row.empty or row["status"].iloc[0] != "failed":
        return
    error = str(row["error"].iloc[0])
    error = re.sub(r"^\w+(Error|Exception): ", "", error).removeprefix(f"patient {patient_id!r}: ")
    hint = "; fix the input named above and predict again"
    if mask is not None and Path(mask).name in error and "not on the grid" in error:
        hint = (f". The --mask {mask} lies on another grid than the T2 (its size, spacing or origin differ, as "
                f"listed): resample it onto the T2 grid (nearest neighbour), or export it from the T2 series in the "
                f"annotation tool, and predict again")
    raise InputError(f"{patient_id}: the images could not be preprocessed: {error}{hint}")


def predict_mri(run: str | Path, out: str | Path, *, t2: str | Path, dwi: str | Path, adc: str | Path,
                mask: str | Path | None = None, clinical: Mapping[str, float] | None = None,
                patient_id: str = "patient", centre: str | None = None, device: str | None = None,
                series: Mapping[str, str | None] | None = None,
                log: Callable[[str], None] = print) -> dict[str, Any]:
    """Segmentation, ROI crop, radiomics, deep features, each model's probability and the fused decision.

    ``series``: the SeriesInstanceUID to read per image (``{"t2": uid}``) when its DICOM folder holds several.
    """
    from osteomet.data.manifest import read_manifest
    from osteomet.data.masks import auto_mask_path
    from osteomet.models.fusion import fusion_inputs
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
    check_clinical(clinical)
    unknown = sorted(set(series or {}) - set(IMAGES))
    if unknown:
        raise InputError(f"series UIDs given for unknown image(s) {', '.join(unknown)}; use {', '.join(IMAGES)}")
    series = {name: str(uid).strip() for name, uid in (series or {}).items() if uid}
    images = {"t2": t2, "dwi": dwi, "adc": adc}
    check_images(images, series)
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
    manifest = _new_manifest(work, patient_id, images, mask, clinical, centre, series)
    seg_config = config.segmentation.config  # the study's preprocessing grid (seg_size) and ROI size
    timed("preprocess", lambda: preprocess.preprocess_mri(manifest, work / "preprocess", seg_config=seg_config))
    _check_preprocessed(work / "preprocess", patient_id, mask)
    segdir, roi = None, work / "preprocess"
    if mask is None:
        timed("segmentation", lambda: segmentation.predict_segmentation(
            work / "preprocess", manifest, layout.segmentation_model, work / "segmentation", device=device))
        segdir, roi = work / "segmentation", work / "roi"
        timed("roi", lambda: preprocess.preprocess_mri(manifest, roi, seg_config=seg_config, segdir=segdir))
        _check_preprocessed(roi, patient_id, None)
    params = work / RADIOMICS_PARAMS
    write_text_atomic(params, _yaml((recorded_settings(layout.radiomics) or {})["params"]))
    _, extraction = timed("radiomics", lambda: radiomics.extract_features(manifest, work / "radiomics",
                                                                        params=str(params), segdir=segdir))
    cohort = read_manifest(manifest, kind="mri")
    frame = cohort.to_frame()
    patients = roi_patients(roi, cohort, segdir)
    if not bool(patients["has_roi"].iloc[0]):
        if mask is not None:
            raise InputError(f"{patient_id}: no tumour ROI could be cut from the mask {mask}; check that it marks the "
                             f"tumour on the T2 grid")
        raise InputError(f"{patient_id}: no tumour ROI could be cut (the study's UNETR found no tumour: its mask is "
                         f"empty); check the images or give a mask with --mask")
    if extraction.failures:
        where = f"the automatic mask {auto_mask_path(segdir, patient_id)}" if segdir is not None else f"the mask {mask}"
        raise InputError(f"{patient_id}: radiomics could not be extracted from {where}: {extraction.failures[0][1]}. "
                         f"Review the mask (e.g. in 3D Slicer) and predict again with --mask")
    features = read_feature_table(work / "radiomics" / FEATURES)
    if combat is not None:
        features = combat.apply(features, [centre])

    explained: dict[str, tuple[Any, pd.DataFrame]] = {}  # model and its inputs, for the SHAP contributions
    deep_table: dict[str, pd.DataFrame] = {}

    def score() -> dict[str, float]:
        explained["clinical"] = (bundle.models["clinical"], frame)
        explained["radiomics"] = (bundle.models["radiomics"], features)
        probs = {name: float(model.predict_proba(X)[0, 1]) for name, (model, X) in explained.items()}
        deep = predict_patients(layout.deep_grid, roi, patients, frame.assign(label=None), device=device)
        probs["deep"] = float(deep["prob"].iloc[0])
        table, _ = deep_features(layout.deep_grid, roi, patients, device=device)
        if combat_deep is not None:
            table = combat_deep.apply(table, [centre])
        table.to_parquet(work / DEEP_FEATURES, index=False)
        deep_table["deep"] = table
        inputs = fusion_inputs(frame, radiomics=features, deep=table, predictions={
            name: pd.DataFrame({"patient_id": [patient_id], "prob": [p]}) for name, p in probs.items()})
        explained["fusion"] = (bundle.models["fusion"], inputs)
        probs["fusion"] = float(explained["fusion"][0].predict_proba(inputs)[0, 1])
        return probs

    probs = timed("models", score)
    conformal, recalibration = trust_result(bundle, probs)
    measured_mask = Path(mask) if mask is not None else auto_mask_path(segdir, patient_id)

    def check_domain() -> tuple[str, list[str], dict[str, Any]]:
        values, error = _measure(bundle, next(iter(cohort)), measured_mask)
        tables = {"radiomics": features, **deep_table}
        return applicability_result(bundle, values, {name: t.set_index(t["patient_id"].astype(str))
                                                     for name, t in tables.items()}, error)

    verdict, reasons, domain = timed("applicability", check_domain)
    missing_values = missing_values_result(bundle, clinical, explained)
    timed("grad-cam", lambda: gradcam_examples(layout.deep_grid, roi, manifest, out / "gradcam",
                                               patient_ids=[patient_id], device=device))
    files = {"gradcam_t2": str(out / "gradcam" / "t2" / f"{patient_id}.nii.gz"),
             "gradcam_png": str(out / "gradcam" / "png" / f"{patient_id}.png")}
    if segdir is not None:
        import shutil

        target = out / f"{patient_id}_mask.nii.gz"
        shutil.copyfile(auto_mask_path(segdir, patient_id), target)
        files["mask"] = str(target)
        from osteomet.data.dicom_seg import seg_beside

        seg_file, seg_note = seg_beside(target, t2, out / f"{patient_id}_mask.seg.dcm", label="prostate tumour",
                                        series_uid=series.get("t2"))
        if seg_file is not None:
            files["dicom_seg"] = str(seg_file)
        log(seg_note)
    explanations = None
    if config.explanations.enabled:
        from osteomet.pipeline.explain import explain_patient

        explanations = timed("explanations", lambda: explain_patient(
            explained, patient_id, config.explanations.top_k, out / "explanations.png"))
        files["explanations_png"] = str(out / "explanations.png")
    missing = [name for name in CLINICAL if name not in clinical]
    result = {"patient_id": patient_id, "probability": probs["fusion"], "threshold": bundle.threshold,
              "decision": "bone metastasis" if probs["fusion"] >= bundle.threshold else "no bone metastasis",
              "models": probs, "conformal": conformal, "recalibration": recalibration,
              "clinical": clinical, "missing_clinical": missing,
              "applicability": verdict, "applicability_reasons": reasons, "applicability_details": domain,
              "missing_values": missing_values,
              "mask_source": "given" if mask else "unetr", "centre": centre, "harmonization": harmonization,
              "files": files, "seconds": seconds,
              "run": str(layout.root.resolve()), "osteomet": __version__, "trained_with": bundle.version,
              "explanations": explanations}
    write_json_atomic(out / RESULT, result)
    write_text_atomic(out / "result.md", render_result(result))
    return result


def _measure(bundle: MRIBundle, record: Any, mask: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The patient's image, intensity and mask numbers, as the study measured its own, or None and why.

    A measurement that fails leaves the prediction standing: the result says the domain was not assessed.
    """
    if bundle.domain is None:
        return None, None
    from osteomet.pipeline.applicability import measure_patient

    try:
        return measure_patient(record, mask), None
    except Exception as exc:  # reported in the result; the models' answer does not depend on it
        return None, f"{type(exc).__name__}: {exc}"


def _yaml(value: Any) -> str:
    import yaml

    return yaml.safe_dump(value, sort_keys=False)


def _probability(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def trust_markdown(result: Mapping[str, Any]) -> list[str]:
    """The table of each model's probability, recalibrated probability (when on) and prediction set, and its key."""
    probs = result["models"]
    conformal = result.get("conformal") or {}
    recalibrated = (result.get("recalibration") or {}).get("models") or {}
    sets = conformal.get("models") or {}
    confidence = f"{conformal['confidence']:.0%}" if conformal.get("confidence") is not None else ""
    header = ["model", "probability"] + (["recalibrated"] if recalibrated else []) + \
             ([f"prediction set ({confidence})"] if sets else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, value in probs.items():
        cells = [name, f"{value:.3f}"]
        if recalibrated:
            cells.append(_probability((recalibrated.get(name) or {}).get("probability")))
        if sets:
            entry = sets.get(name)
            cells.append("n/a" if entry is None else entry["text"] + (": uncertain" if entry["verdict"] == "uncertain"
                                                                     else ": empty" if entry["verdict"] == "empty"
                                                                     else ""))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    if sets:
        lines.append(f"Prediction sets: Mondrian split conformal at {confidence} confidence per class (error rate "
                     f"{conformal['alpha']:g}), calibrated on the study's validation and out-of-fold training "
                     f"patients. {{BM}} or {{no BM}}: the score is typical of that class only; {{no BM, BM}}: typical "
                     f"of both (uncertain); {{}}: typical of neither (an unusual patient for this model).")
        for name, entry in sets.items():
            if entry.get("note"):
                lines.append(f"- {name}: {entry['note']}")
    elif conformal.get("note"):
        lines.append(f"Prediction sets: {conformal['note']}.")
    for name, entry in recalibrated.items():
        if entry.get("reason"):
            lines.append(f"- {name}: not recalibrated ({entry['reason']})")
    if recalibrated:
        lines.append("Recalibrated: logistic recalibration (intercept and slope on logit p) fitted on the same "
                     "held-out study patients; the decision uses the model's own probability and threshold.")
    return lines


def applicability_markdown(result: Mapping[str, Any]) -> list[str]:
    """The verdict against the study's applicability domain with every reason, and the missing-value statements."""
    verdict = result.get("applicability", "not assessed")
    details = result.get("applicability_details") or {}
    if verdict == "not assessed":
        lines = [f"**applicability: not assessed** ({details.get('note') or 'no domain'})"]
    else:
        failed = details.get("failed") or {}
        groups = ", ".join(f"{g} {n}" for g, n in failed.items() if n)
        head = (f"**applicability: {verdict}** the study's domain ({details.get('fitted_on')} training patients): "
                f"{len(result.get('applicability_reasons') or [])} of {details.get('checks')} checks failed"
                + (f" ({groups})" if groups else ""))
        lines = [head + (":" if verdict == "outside" else ".")]
        lines += [f"- {reason}" for reason in result.get("applicability_reasons") or []]
        if verdict == "outside":
            lines.append("The models were not trained on patients like this one: read the probability with that in "
                         "mind, or check the inputs named above (series, units, b-value, mask).")
    lines.append("")
    missing = result.get("missing_values") or {}
    if missing.get("statements"):
        lines.append(f"Missing clinical values (each tried at its plausible values from the training patients; a "
                     f"shift of more than {missing.get('shift', 0.1):g} is stated):")
        lines += [f"- {statement}" for statement in missing["statements"]]
        lines.append("")
    elif missing.get("note") and result.get("missing_clinical"):
        lines += [f"Missing clinical values: {missing['note']}.", ""]
    return lines


def render_result(result: dict[str, Any]) -> str:
    fusion = ((result.get("conformal") or {}).get("models") or {}).get("fusion")
    fused = "" if fusion is None else (f"; prediction set {fusion['text']} at {result['conformal']['confidence']:.0%} "
                                       f"confidence" + (" (uncertain)" if fusion["verdict"] == "uncertain" else ""))
    lines = [f"# osteomet prediction: {result['patient_id']}", "",
             f"**{result['decision']}**: fusion probability {result['probability']:.3f} "
             f"(study threshold {result['threshold']:.3f}){fused}", ""]
    lines += applicability_markdown(result)
    lines += trust_markdown(result)
    lines += ["", f"- mask: {result['mask_source']}", f"- harmonization: {result.get('harmonization', 'off')}",
              f"- missing clinical values: {', '.join(result['missing_clinical']) or 'none'}",
              f"- files: {', '.join(f'{k}: {v}' for k, v in result['files'].items())}",
              f"- seconds per stage: {result['seconds']}",
              f"- models from {result['run']} (osteomet {result['trained_with']})", ""]
    if result.get("explanations"):
        from osteomet.pipeline.explain import explanation_markdown

        lines += explanation_markdown(result["explanations"])
    return "\n".join(lines)
