"""The ``applicability`` stage: the study's applicability domain and its clinical missingness, for every predict.

Why: `predict mri` gives a number for any input. This stage measures every study patient the
way `predict` measures a new one (:func:`measure_patient`), fits the domain on the training
patients (:class:`osteomet.models.applicability.ApplicabilityDomain`) and says how often the
study's own patients fall outside it, per split: the external centre's flag rate is the
shift the domain detects, the test patients' rate what a patient of the study's population
costs. Training patients get out-of-fold verdicts (a domain fitted without their fold), so
their rate is honest too.

Checks, each against the training patients' range (min to max widened by ``margin`` times its
width on each side, log scale for positive quantities, and a floor per kind):

* image: in-plane spacing, slice spacing, in-plane field of view and through-plane extent of
  T2, DWI and ADC (10% floor); their orientation codes (``LPS``; one the training patients had);
  the T2 slice tilt (5 degrees);
* raw intensities (before any normalisation, which removes a vendor's or a protocol's scale):
  the 10th, 50th and 90th percentiles of T2, DWI and ADC inside the tumour mask and inside a
  gland region (within 15 mm in-plane and 10 mm through-plane of the T2 field-of-view centre,
  where prostate bpMRI is planned, minus the mask), and each channel's tumour-to-gland median
  ratio (20% floor). A doubled DWI scale, another b-value, ADC in other units or a swapped
  T2/ADC move these by far more than the cohort's spread (the tumour is dark on ADC and T2,
  bright on DWI; ADC is in physical units);
* mask (the mask the models used: reviewed > UNETR > manifest): volume (50% floor: index tumours
  vary tenfold), connected components (at most the training maximum) and the farthest
  component's in-plane distance from the field-of-view centre (10 mm floor), as
  :mod:`osteomet.mri.segmentation.qc` measures them;
* features: the Ledoit-Wolf Mahalanobis distance of the radiomics model's selected features
  (after ComBat, what the model reads) and of the deep features, each against the 99th
  percentile of the cross-validated training distances.

Writes ``domain.json``, ``missingness.json`` (:class:`osteomet.models.missing_values.MissingnessRecord`),
``measurements.csv`` (every patient's numbers, cached by the content of its images and mask),
``flags.csv`` (every patient's verdict and reasons, with each model's probability) and
``flag_rates.csv`` (per split: patients outside with the Wilson 95% CI, per check group, and the
decision model's Brier score within and outside).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pandas as pd

from osteomet.errors import InputError
from osteomet.layout import DOMAIN, FLAG_RATES, FLAGS, MEASUREMENTS, MISSINGNESS, MODEL_DIR
from osteomet.stage import Stage, StageOutcome
from osteomet.utils.files import write_text_atomic

if TYPE_CHECKING:
    from osteomet.data.manifest import MRIRecord
    from osteomet.models.applicability import ApplicabilityDomain, Finding, Quantity
    from osteomet.pipeline.study import ApplicabilitySettings

STAGE = "applicability"
#: Bumped when a measurement changes: cached measurements of another version are measured again.
MEASURE_VERSION = "1"
#: The gland region: within this in-plane radius and through-plane half-height of the T2 field-of-view centre.
GLAND_RADIUS_MM = 15.0
GLAND_HALF_HEIGHT_MM = 10.0
#: Fewest voxels a region needs for its percentiles (fewer: not measured).
MIN_VOXELS = 5
SERIES = ("t2", "dwi", "adc")
PERCENTILES = (10, 50, 90)
REGIONS = {"tumour": "tumour mask", "gland": "gland region"}
GROUPS = ("image", "mask", "features")
#: The feature groups and their words.
FEATURE_GROUPS = {"radiomics": "radiomics feature", "deep": "deep feature"}
SPLITS = ("train", "val", "test", "external")


def quantities() -> dict[str, "Quantity"]:
    """Every measured quantity with its words, scale and floor (the ranges' definitions)."""
    from osteomet.models.applicability import Quantity

    found: dict[str, Quantity] = {}
    for series in SERIES:
        name = series.upper()
        found[f"{series}_spacing_mm"] = Quantity(f"{name} in-plane spacing", "image", "log", tolerance=0.1, unit="mm")
        found[f"{series}_slice_mm"] = Quantity(f"{name} slice spacing", "image", "log", tolerance=0.1, unit="mm")
        found[f"{series}_fov_mm"] = Quantity(f"{name} in-plane field of view", "image", "log", tolerance=0.1,
                                             unit="mm")
        found[f"{series}_fov_z_mm"] = Quantity(f"{name} through-plane extent", "image", "log", tolerance=0.1,
                                               unit="mm")
        found[f"{series}_orientation"] = Quantity(f"{name} orientation", "image", "category")
    found["t2_tilt_deg"] = Quantity("T2 slice tilt from the nearest axis", "image", "linear", "upper", tolerance=5.0,
                                    unit="degrees")
    for series in SERIES:
        name = series.upper()
        for region, words in REGIONS.items():
            for q in PERCENTILES:
                found[f"{series}_{region}_p{q}"] = Quantity(f"{name} {q}th percentile in the {words}", "image", "log",
                                                            tolerance=0.2)
        found[f"{series}_contrast"] = Quantity(f"{name} tumour-to-gland median ratio", "image", "log", tolerance=0.2)
    found["mask_volume_ml"] = Quantity("mask volume", "mask", "log", tolerance=0.5, unit="mL")
    found["mask_components"] = Quantity("mask connected components", "mask", "count", "upper")
    found["mask_distance_mm"] = Quantity("mask distance from the field-of-view centre", "mask", "linear", "upper",
                                         tolerance=10.0, unit="mm")
    return found


def _geometry(image: Any, series: str) -> dict[str, Any]:
    import SimpleITK as sitk

    spacing, size = image.GetSpacing(), image.GetSize()
    direction = image.GetDirection()
    values = {f"{series}_spacing_mm": float(np.mean(spacing[:2])), f"{series}_slice_mm": float(spacing[2]),
              f"{series}_fov_mm": float(max(size[0] * spacing[0], size[1] * spacing[1])),
              f"{series}_fov_z_mm": float(size[2] * spacing[2]),
              f"{series}_orientation": sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(direction)}
    if series == "t2":
        normal = np.abs(np.asarray(direction, float).reshape(3, 3)[:, 2])
        values["t2_tilt_deg"] = float(np.degrees(np.arccos(np.clip(normal.max() / np.linalg.norm(normal), -1, 1))))
    return values


def measure_patient(record: "MRIRecord", mask: str | Path | None = None) -> dict[str, Any]:
    """One patient's image, intensity and mask numbers (the raw images, before any normalisation).

    ``mask``: the tumour mask on the T2 grid the models used (default: the record's own).
    DWI and ADC are resampled onto the T2 grid in physical space, as the preprocessing does.
    """
    import SimpleITK as sitk

    from osteomet.data.geometry import Geometry, coverage_mask, resample_to
    from osteomet.data.images import read_image
    from osteomet.data.label_masks import read_lesion_labels
    from osteomet.mri.segmentation.qc import check_mask

    values: dict[str, Any] = {}
    t2 = read_image(record.t2, pixel_type=sitk.sitkFloat32, series_uid=record.series_uid("t2"))
    grid = Geometry.of(t2)
    values.update(_geometry(t2, "t2"))
    arrays = {"t2": sitk.GetArrayFromImage(t2)}
    covered = np.ones(arrays["t2"].shape, bool)
    for series in ("dwi", "adc"):
        image = read_image(getattr(record, series), pixel_type=sitk.sitkFloat32, series_uid=record.series_uid(series))
        values.update(_geometry(image, series))
        arrays[series] = sitk.GetArrayFromImage(resample_to(image, grid))
        covered &= sitk.GetArrayFromImage(coverage_mask(image, grid)).astype(bool)  # a copy: a view of the
        # temporary image would read freed memory (SIGSEGV on large volumes)
    mask = record.mask if mask is None else mask
    tumour = np.zeros_like(covered)
    if mask is not None:
        labels = read_lesion_labels(mask, reference=t2, reference_name=record.t2, allow_empty=True)
        binary = sitk.Cast(labels > 0, sitk.sitkUInt8)
        tumour = sitk.GetArrayFromImage(binary).astype(bool)
        if tumour.any():
            qc = check_mask(binary)
            values.update({"mask_volume_ml": qc.volume_ml, "mask_components": qc.components,
                           "mask_distance_mm": qc.distance_mm})
    nz, ny, nx = tumour.shape
    sx, sy, sz = t2.GetSpacing()
    z, y, x = np.meshgrid(*((np.arange(n) - (n - 1) / 2) for n in (nz, ny, nx)), indexing="ij")
    gland = (np.hypot(x * sx, y * sy) <= GLAND_RADIUS_MM) & (np.abs(z * sz) <= GLAND_HALF_HEIGHT_MM) & covered & ~tumour
    regions = {"tumour": tumour & covered, "gland": gland}
    for series, array in arrays.items():
        for region, inside in regions.items():
            voxels = array[inside]
            for q in PERCENTILES:
                values[f"{series}_{region}_p{q}"] = (float(np.percentile(voxels, q)) if voxels.size >= MIN_VOXELS
                                                     else np.nan)
        tumour_median, gland_median = values[f"{series}_tumour_p50"], values[f"{series}_gland_p50"]
        values[f"{series}_contrast"] = (tumour_median / gland_median if np.isfinite(tumour_median)
                                        and np.isfinite(gland_median) and gland_median > 0 else np.nan)
    return values


def _measure_task(task: tuple["MRIRecord", str]) -> dict[str, Any]:
    record, key = task
    try:
        return {"patient_id": record.patient_id, "key": key, "error": None, **measure_patient(record)}
    except Exception as exc:  # reported per patient (not checked); the others go on
        return {"patient_id": record.patient_id, "key": key, "error": f"{type(exc).__name__}: {exc}"}


def _measurement_key(record: "MRIRecord") -> str:
    from osteomet.utils.case_cache import cache_key

    inputs = [(name, getattr(record, name), record.series_uid(name) if name != "mask" else None)
              for name in ("t2", "dwi", "adc", "mask")]
    return cache_key(inputs, f"gland={GLAND_RADIUS_MM},{GLAND_HALF_HEIGHT_MM}", f"applicability={MEASURE_VERSION}")


def measure_cohort(cohort: Any, out: Path, *, jobs: int = 1) -> pd.DataFrame:
    """Every patient's measurements; a patient whose images and mask are unchanged keeps its earlier row."""
    from osteomet.utils.parallel import map_tasks
    from osteomet.utils.progress import progress_bar

    earlier: dict[str, dict[str, Any]] = {}
    if (out / MEASUREMENTS).is_file():
        try:
            old = pd.read_csv(out / MEASUREMENTS, dtype={"patient_id": str})
            earlier = {row["patient_id"]: row for row in old.to_dict("records") if pd.isna(row.get("error"))}
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, KeyError):
            earlier = {}
    rows, tasks = [], []
    for record in cohort:
        key = _measurement_key(record)
        if record.patient_id in earlier and earlier[record.patient_id].get("key") == key:
            rows.append(earlier[record.patient_id])
        else:
            tasks.append((record, key))
    with progress_bar("applicability", len(tasks), transient=True) as advance:
        rows += map_tasks(_measure_task, tasks, jobs=jobs, progress=advance)
    order = {pid: i for i, pid in enumerate(cohort.patient_ids)}
    frame = pd.DataFrame(rows)
    frame = frame.iloc[np.argsort([order[p] for p in frame["patient_id"]])].reset_index(drop=True)
    if "error" not in frame:
        frame["error"] = None
    write_text_atomic(out / MEASUREMENTS, frame.to_csv(index=False))
    return frame


def _feature_table(path: str | Path | None, columns: list[str] | None) -> pd.DataFrame | None:
    """A feature table indexed by patient (usable rows; ``columns`` or every numeric feature)."""
    if path is None or not Path(path).is_file():
        return None
    from osteomet.models.radiomics import numeric_features
    from osteomet.radiomics.features import read_feature_table

    table = read_feature_table(path)
    if "error" in table:
        table = table[table["error"].isna()]
    table = table.set_index(table["patient_id"].astype(str))
    numeric = numeric_features(table.reset_index(drop=True)).set_index(table.index)
    if columns:
        missing = [c for c in columns if c not in numeric.columns]
        if missing:
            raise InputError(f"{path}: the radiomics model's feature(s) {', '.join(missing[:5])} are not in this "
                             f"table; rerun `osteomet run mri` so the model and its table agree")
        numeric = numeric[columns]
    return numeric.dropna(how="all")


def selected_radiomics(model: str | Path | None) -> list[str] | None:
    """The radiomics model's selected features (None when there is no model: then every feature counts)."""
    if model is None:
        return None
    folder = Path(model)
    folder = folder / MODEL_DIR if (folder / MODEL_DIR).is_dir() else folder
    if not folder.is_dir():
        return None
    from osteomet.models.radiomics import RadiomicsModel

    return [str(c) for c in RadiomicsModel.load(folder).features]


def fit_applicability(study_manifest: str | Path, out: str | Path, settings: "ApplicabilitySettings | None" = None, *,
                      segdir: str | Path | None = None, radiomics: str | Path | None = None,
                      radiomics_model: str | Path | None = None, deep: str | Path | None = None,
                      predictions: Mapping[str, str | Path] | None = None, seed: int = 0,
                      jobs: int = 1) -> StageOutcome:
    """Measure every study patient, fit the domain on the training patients, record every verdict and the missingness.

    ``segdir``: the study's UNETR masks (the effective mask per patient: reviewed > auto >
    manifest), else the manifest's masks. ``radiomics``: the feature table the radiomics model read
    (``radiomics_model``: its folder, whose selected features are used; without it every feature).
    ``deep``: the deep feature table. ``predictions``: each model's prediction table (their
    probabilities go into ``flags.csv``, the decision model's Brier score into ``flag_rates.csv``).
    """
    from osteomet.data.manifest import read_manifest
    from osteomet.pipeline.inputs import manifest_inputs
    from osteomet.pipeline.study import ApplicabilitySettings

    settings = settings or ApplicabilitySettings()
    cohort = read_manifest(study_manifest, kind="mri")
    if segdir is not None:
        from osteomet.data.masks import apply_masks

        cohort = apply_masks(cohort, segdir)
    columns = selected_radiomics(radiomics_model)
    files = {name: Path(p) for name, p in (predictions or {}).items()}
    stage_settings = {"margin": settings.margin, "feature_quantile": settings.feature_quantile,
                      "folds": settings.folds, "seed": seed, "radiomics_columns": columns,
                      "gland_mm": [GLAND_RADIUS_MM, GLAND_HALF_HEIGHT_MM], "measure": MEASURE_VERSION,
                      "mask_source": "segmentation" if segdir is not None else "manifest"}
    out = Path(out)
    stage = Stage(STAGE, out, settings=stage_settings,
                  inputs={**manifest_inputs(cohort, study_manifest), "radiomics": radiomics, "deep": deep,
                          **{f"predictions_{name}": p for name, p in files.items()}},
                  outputs=(DOMAIN, MISSINGNESS, MEASUREMENTS, FLAGS, FLAG_RATES))

    def work() -> dict[str, Any]:
        from osteomet.models.applicability import ApplicabilityDomain, cross_validated_findings
        from osteomet.models.clinical import CLINICAL_FEATURES
        from osteomet.models.missing_values import MissingnessRecord

        frame = cohort.to_frame().set_index("patient_id", drop=False)
        frame.index = frame.index.astype(str)
        measured = measure_cohort(cohort, out, jobs=jobs).set_index("patient_id")
        measured.index = measured.index.astype(str)
        ok = measured[measured["error"].isna()]
        train = [p for p in ok.index if frame.loc[p, "split"] == "train"]
        if not train:
            raise InputError(f"{study_manifest}: no training patient could be measured (first errors: "
                             + "; ".join(f"{p}: {e}" for p, e in measured["error"].dropna().head(3).items())
                             + "); the applicability domain needs the training patients' images")
        tables = {"radiomics": _feature_table(radiomics, columns), "deep": _feature_table(deep, None)}
        features = {name: (FEATURE_GROUPS[name], table) for name, table in tables.items() if table is not None}
        training = {name: (label, table.loc[table.index.intersection(train)])
                    for name, (label, table) in features.items()}
        spec = quantities()
        domain = ApplicabilityDomain.fit(ok.loc[train], spec, training, margin=settings.margin,
                                         quantile=settings.feature_quantile, folds=settings.folds, seed=seed)
        domain.save(out / DOMAIN, fitted_on={"split": "train", "n": len(train)},
                    mask_source=stage_settings["mask_source"], gland_mm=stage_settings["gland_mm"])
        out_of_fold = cross_validated_findings(ok.loc[train], spec, training, domain, folds=settings.folds, seed=seed)
        probabilities = _probabilities(files, study_manifest)
        rows = []
        for pid in frame.index:
            if pid not in ok.index:
                found, how = None, "not measured"
            elif pid in out_of_fold:
                found, how = out_of_fold[pid], "out-of-fold"
            else:
                rows_of = {name: table.loc[[pid]] for name, (_, table) in features.items() if pid in table.index}
                found, how = domain.findings(ok.loc[pid].to_dict(), rows_of), "study domain"
            rows.append(_flag_row(frame.loc[pid], found, how, measured.loc[pid, "error"] if pid in measured.index
                                  else "not measured", probabilities.get(pid, {})))
        flags = pd.DataFrame(rows)
        write_text_atomic(out / FLAGS, flags.to_csv(index=False))
        rates = flag_rates(flags, decision=_decision_model(files))
        write_text_atomic(out / FLAG_RATES, rates.to_csv(index=False))
        MissingnessRecord.fit(frame.reset_index(drop=True), CLINICAL_FEATURES).save(out / MISSINGNESS)
        return {"n_train": len(train), "checks": domain.describe(), "skipped": domain.skipped,
                "flag_rate": {r["split"]: r["rate"] for r in rates.to_dict("records")},
                "not_measured": int(measured["error"].notna().sum())}

    return stage.run(work)


def _probabilities(files: Mapping[str, Path], manifest: str | Path) -> dict[str, dict[str, float]]:
    """Each patient's probability per model, from the prediction tables."""
    from osteomet.models.predictions import read_predictions

    found: dict[str, dict[str, float]] = {}
    for name, path in files.items():
        if not Path(path).is_file():
            continue
        table = read_predictions(path)
        for pid, prob in zip(table["patient_id"].astype(str), table["prob"]):
            found.setdefault(pid, {})[name] = float(prob) if pd.notna(prob) else np.nan
    return found


def _decision_model(files: Mapping[str, Path]) -> str | None:
    return "fusion" if "fusion" in files else next(iter(files), None)


def _flag_row(patient: pd.Series, found: "list[Finding] | None", how: str, error: Any,
              probabilities: Mapping[str, float]) -> dict[str, Any]:
    row: dict[str, Any] = {"patient_id": patient["patient_id"], "split": patient.get("split"),
                           "centre": patient.get("centre"), "label": patient.get("label")}
    if found is None:
        row.update({"applicability": "not checked", "verdict_from": how, "n_reasons": 0,
                    **{g: False for g in GROUPS}, "failed": "", "reasons": f"not measured: {error}"})
    else:
        failed = [f for f in found if f.outside]
        row.update({"applicability": "outside" if failed else "within", "verdict_from": how,
                    "n_reasons": len(failed), **{g: any(f.group == g for f in failed) for g in GROUPS},
                    "failed": ";".join(f.name for f in failed), "reasons": "; ".join(f.text for f in failed)})
        for f in found:
            if f.group == "features":
                row[f"{f.name}_distance"] = f.value
    row.update({f"prob_{name}": p for name, p in probabilities.items()})
    return row


def flag_rates(flags: pd.DataFrame, decision: str | None = None) -> pd.DataFrame:
    """Per split: patients checked, outside the domain (share, Wilson 95% CI), per check group, and the decision
    model's Brier score within and outside."""
    from osteomet.evaluation.proportions import wilson_interval

    rows = []
    splits = [s for s in SPLITS if (flags["split"] == s).any()] + \
        sorted(set(flags["split"].dropna().astype(str)) - set(SPLITS))
    for split in splits:
        part = flags[flags["split"] == split]
        checked = part[part["applicability"] != "not checked"]
        outside = checked["applicability"] == "outside"
        rate, low, high = (wilson_interval(int(outside.sum()), len(checked)) if len(checked)
                           else (np.nan, np.nan, np.nan))
        low, high = (float(np.round(np.clip(v, 0.0, 1.0), 12)) for v in (low, high))  # no 5e-17 for a zero
        row = {"split": split, "n": len(part), "checked": len(checked), "outside": int(outside.sum()), "rate": rate,
               "ci_low": low, "ci_high": high,
               **{g: int(checked[g].astype(bool).sum()) for g in GROUPS}}
        column = f"prob_{decision}" if decision else None
        for name, members in (("within", checked[~outside]), ("outside", checked[outside])):
            scored = members.dropna(subset=[c for c in (column, "label") if c and c in members]) \
                if column and column in members else members.iloc[0:0]
            row[f"brier_{name}"] = (float(np.mean((scored[column] - scored["label"].astype(float)) ** 2))
                                    if len(scored) else np.nan)
        rows.append(row)
    return pd.DataFrame(rows, columns=["split", "n", "checked", "outside", "rate", "ci_low", "ci_high", *GROUPS,
                                       "brier_within", "brier_outside"])


def patient_applicability(domain: "ApplicabilityDomain", values: Mapping[str, Any],
                          features: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    """One new patient's verdict: ``within`` / ``outside``, the reasons, and each group's failed checks."""
    found = domain.findings(values, features)
    failed = [f for f in found if f.outside]
    return {"verdict": "outside" if failed else "within", "reasons": [f.text for f in failed],
            "checks": len(found), "groups": {g: sum(f.group == g for f in failed) for g in GROUPS},
            "not_measured": [f.name for f in found if f.value is None],
            "distances": {f.name: f.value for f in found if f.group == "features"}}


__all__ = ["STAGE", "fit_applicability", "flag_rates", "measure_cohort", "measure_patient", "patient_applicability",
           "quantities"]
