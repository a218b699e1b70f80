"""Where every stage's files live: the one module that names them (as ``nnunetv2/paths.py`` does).

A **run directory** holds a study: one folder per stage, each a *stage folder* that a single
command (``osteomet preprocess mri -o PRE``) can also write on its own. Every stage folder
holds ``settings.yaml`` (the settings it ran with, the only form settings are recorded in,
re-usable as ``--config``) and ``stage.json`` (inputs fingerprint, version, timings; written
last, so its presence means the stage finished). A marker file at the top of a run directory
(``osteomet-run.json``) tells osteomet's folders from the user's own, so a run never writes
into, or over, someone's data.

::

    RUN/
      osteomet-run.json
      run.json              the study's config, package versions, seeds and per-stage timings (``run mri``)
      split/                manifest.csv: the study's manifest with its patient-level split
      preprocess/           index.csv, cases/<patient>/{*.npy, transform.json} (the manifest's masks)
      roi/                  the same, ROI crops cut around the masks later stages use (reviewed > auto)
      segmentation/model/   checkpoints/{best,last}.pt, history.csv
      segmentation/masks/   auto/<patient>.nii.gz, reviewed/<patient>.nii.gz, provenance.json, metrics.csv,
                            qc/qc.csv (each automatic mask checked, and what its patient gets), review/
      cohort/               manifest.csv every model uses (the study's minus mask-QC exclusions), exclusions.csv
      radiomics/            features.parquet, features.csv, extraction_log.csv, cache/
      stability/            icc.csv, icc_by_class.csv/.png: radiomics ICC under mask perturbation (training patients)
      model_features/       features.parquet the models read (stable, ComBat-harmonized), combat.json, harmonization.csv
      deep/grid/            grid.csv, heatmap.png, winner.json, configs/<name>/...
      deep/features/        features.parquet, features.json
      deep/gradcam/         gradcam.csv, png/, roi/, t2/
      models/<model>/       model/ (XGBoost JSON + feature list), predictions.csv, tuning.csv
      explanations/         <model>_shap_summary.png, <model>_shap_importance.csv, <model>_shap_values.csv
      trust/                coverage.csv; <model>/conformal.json (Mondrian split-conformal calibration),
                            <model>/recalibration.json (logistic recalibration, when enabled)
      applicability/        domain.json (the training patients' ranges and feature distances), missingness.json,
                            measurements.csv, flags.csv (every patient's verdict), flag_rates.csv (per split)
      flow/                 patient_flow.csv, flow.json, flow.png: each patient from the manifest to the evaluation
      evaluation/           metrics.csv, delong.csv, calibration.csv, roc_/calibration_/decision_curve_<cohort>.png
                            (+ .svg), cohort_characteristics.csv
      ct/split/ ct/detection/ ct/segmentation/ ct/nnunet/ ct/lesions/ ct/icc/ ct/rules/
      report.html
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from osteomet import __version__
from osteomet.errors import OutputExistsError
from osteomet.utils.files import write_json_atomic

# ---- every stage folder ---------------------------------------------------------------------
MARKER = "osteomet-run.json"
STAGE_RECORD = "stage.json"
SETTINGS = "settings.yaml"
LEGACY_SETTINGS = "config.yaml"  # what run folders written before settings.yaml recorded their settings in

# ---- cohorts and splits ----------------------------------------------------------------------
MANIFEST = "manifest.csv"
PATIENTS = "patients.csv"  # one row per patient with its split (CT slice runs, classifier grids)
CLASS_BALANCE = "class_balance.csv"
SYNTH_RECORD = "synth.json"  # a synthetic cohort's generator settings
MRI_TRUTH = "truth.csv"  # a synthetic bpMRI cohort's per-patient truth
CT_TRUTH = "lesions_truth.csv"  # a synthetic CT cohort's per-lesion truth

# ---- preprocessing (MRI) --------------------------------------------------------------------
INDEX = "index.csv"
CASES = "cases"
TRANSFORM = "transform.json"

# ---- trained networks (UNETR, CT slice models, 3D ResNets) --------------------------------------
CHECKPOINTS = "checkpoints"
BEST_CHECKPOINT = "best.pt"
LAST_CHECKPOINT = "last.pt"
HISTORY = "history.csv"
RESULT = "result.json"  # a finished training run's (or prediction's) result, written last
GRID_TABLE = "grid.csv"
GRID_CONFIGS = "configs"  # the 3D-ResNet grid: one training run per configuration
OOF_FOLDS = "folds"  # the deep model's cross-fitted training runs, one per fold
WINNER = "winner.json"  # the 3D-ResNet grid's chosen configuration
DEEP_FEATURES_META = "features.json"
GRADCAM_TABLE = "gradcam.csv"
GRADCAM_LOCALISATION = "localisation.json"
THRESHOLD = "threshold.json"  # a CT detector's decision threshold
POSTPROCESSING = "postprocessing.json"  # a CT segmenter's post-processing chosen on validation
SLICE_RECORD = "slices.json"  # one CT's cached slices
SLICE_SCORES = "slice_scores.csv"
PATIENT_SCORES = "patient_scores.csv"
PER_PATIENT = "per_patient.csv"
COMPARISON = "comparison.csv"
SLICE_CACHE = "slices"  # CT slice models: the default slice cache folder (one settings folder inside per window)

# ---- segmentation masks (automatic and reviewed) -----------------------------------------------
AUTO_DIR = "auto"
REVIEWED_DIR = "reviewed"
PROVENANCE = "provenance.json"
REVIEW_SHEET = "review_sheet.csv"
QC_DIR = "qc"  # SEGDIR/qc: the automatic-mask QC stage and its decisions
QC_TABLE = "qc.csv"
EXCLUSIONS = "exclusions.csv"  # the study cohort's excluded patients, with stage and reason
FLOW_TABLE = "patient_flow.csv"
FLOW_RECORD = "flow.json"
FLOW_FIGURE = "flow.png"
REVIEW_EXPORT = "export.json"
MASK_SUFFIX = ".nii.gz"

# ---- radiomics --------------------------------------------------------------------------------
FEATURES = "features.parquet"
FEATURES_CSV = "features.csv"
EXTRACTION_LOG = "extraction_log.csv"
FEATURE_CACHE = "cache"
ICC = "icc.csv"
ICC_BY_CLASS = "icc_by_class.csv"
STABILITY_FILTER = "stability_filter.csv"
COMBAT = "combat.json"
COMBAT_DEEP = "combat_deep.json"
DEEP_FEATURES = "deep_features.parquet"
HARMONIZATION = "harmonization.csv"
HARMONIZATION_SUMMARY = "harmonization_summary.csv"
RADIOMICS_PARAMS = "radiomics_params.yaml"

# ---- CT per-lesion analysis -------------------------------------------------------------------
LESIONS = "lesions.csv"
REFERENCE_LESIONS = "reference_lesions.csv"
LESION_BONES = "bones.csv"

# ---- models, predictions, evaluation -------------------------------------------------------------
MODEL_DIR = "model"
XGBOOST_MODEL = "xgboost.json"
TUNING = "tuning.csv"
TUNING_OUT_OF_FOLD = "tuning_out_of_fold.csv"
PREDICTIONS = "predictions.csv"
METRICS = "metrics.csv"
SUMMARY = "summary.csv"
DELONG = "delong.csv"
CALIBRATION = "calibration.csv"
COHORT_TABLE = "cohort_characteristics.csv"
REPORT = "report.html"
RUN_RECORD = "run.json"
DEMO_SUMMARY = "summary.json"

# ---- prediction sets and recalibration (``trust/``) ------------------------------------------------
CONFORMAL = "conformal.json"  # a model's Mondrian split-conformal calibration scores
RECALIBRATION = "recalibration.json"  # a model's logistic recalibration (intercept, slope)
COVERAGE = "coverage.csv"  # empirical coverage of the prediction sets per model, cohort and class

# ---- applicability domain and missing clinical values (``applicability/``) ----------------------
DOMAIN = "domain.json"  # the checks fitted on the training patients (ranges, feature distances)
MISSINGNESS = "missingness.json"  # the training cohort's missing clinical values and their plausible values
MEASUREMENTS = "measurements.csv"  # every study patient's image, intensity and mask numbers
FLAGS = "flags.csv"  # every study patient's verdict (training patients out-of-fold) with its reasons
FLAG_RATES = "flag_rates.csv"  # the share of patients outside the domain per split


def model_meta(model: str) -> str:
    """The JSON beside an XGBoost model that says what it is (``clinical_model.json``)."""
    return f"{model}_model.json"


def roc_figure(cohort: str) -> str:
    return f"roc_{cohort}.png"


@dataclass(frozen=True)
class RunLayout:
    """The stage folders of one run directory."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def run_record(self) -> Path:
        return self.root / RUN_RECORD

    # bpMRI
    @property
    def cohorts(self) -> Path:
        return self.root / "cohorts"

    @property
    def split(self) -> Path:
        return self.root / "split"

    @property
    def manifest(self) -> Path:
        return self.split / "manifest.csv"

    @property
    def preprocess(self) -> Path:
        return self.root / "preprocess"

    @property
    def roi(self) -> Path:
        return self.root / "roi"

    @property
    def segmentation_model(self) -> Path:
        return self.root / "segmentation" / "model"

    @property
    def masks(self) -> Path:
        return self.root / "segmentation" / "masks"

    @property
    def mask_qc(self) -> Path:
        return self.masks / QC_DIR

    @property
    def cohort(self) -> Path:
        """The study cohort after mask QC: ``manifest.csv`` every model uses, ``exclusions.csv``."""
        return self.root / "cohort"

    @property
    def flow(self) -> Path:
        """The patient flow: ``patient_flow.csv``, ``flow.json``, ``flow.png``."""
        return self.root / "flow"

    @property
    def radiomics(self) -> Path:
        return self.root / "radiomics"

    @property
    def stability(self) -> Path:
        return self.root / "stability"

    @property
    def model_features(self) -> Path:
        return self.root / "model_features"

    @property
    def deep(self) -> Path:
        return self.root / "deep"

    @property
    def deep_grid(self) -> Path:
        return self.deep / "grid"

    @property
    def deep_features(self) -> Path:
        return self.deep / "features"

    @property
    def deep_gradcam(self) -> Path:
        return self.deep / "gradcam"

    def model(self, name: str) -> Path:
        return self.root / "models" / name

    @property
    def explanations(self) -> Path:
        return self.root / "explanations"

    @property
    def trust(self) -> Path:
        """Conformal prediction sets and recalibration: ``coverage.csv``, ``<model>/conformal.json``."""
        return self.root / "trust"

    @property
    def applicability(self) -> Path:
        """The applicability domain and missingness: ``domain.json``, ``missingness.json``, ``flags.csv``."""
        return self.root / "applicability"

    @property
    def evaluation(self) -> Path:
        return self.root / "evaluation"

    @property
    def cohort_table(self) -> Path:
        return self.evaluation / COHORT_TABLE

    # CT
    @property
    def ct_detection(self) -> Path:
        return self.root / "ct" / "detection"

    @property
    def ct_segmentation(self) -> Path:
        return self.root / "ct" / "segmentation"

    @property
    def ct_lesions(self) -> Path:
        return self.root / "ct" / "lesions"

    @property
    def ct_icc(self) -> Path:
        return self.root / "ct" / "icc"

    @property
    def ct_rules(self) -> Path:
        """Each CT model's patient-level rule chosen on validation and the patient-level metrics (``run ct``)."""
        return self.root / "ct" / "rules"

    @property
    def ct_nnunet(self) -> Path:
        """nnU-Net v2's steps (``run ct`` with ``nnunet.enabled``): export/, plan/, train/, predict/ and logs/."""
        return self.root / "ct" / "nnunet"

    @property
    def ct_split(self) -> Path:
        """The CT study's manifest with the split every CT model shares (``run ct``)."""
        return self.root / "ct" / "split"

    def ct_lesions_of(self, architecture: str) -> Path:
        return self.ct_lesions / architecture

    def ct_icc_of(self, architecture: str) -> Path:
        return self.ct_icc / architecture

    def ct_lesion_folders(self) -> dict[str, Path]:
        """Each segmenter's per-lesion analysis (``ct/lesions/<architecture>``, written by ``run ct``); a
        ``ct/lesions`` of `ct lesions-cohort` itself counts as ``predicted``."""
        root = self.ct_lesions
        if (root / LESIONS).is_file():
            return {"predicted": root}
        return {p.name: p for p in sorted(root.iterdir()) if (p / LESIONS).is_file()} if root.is_dir() else {}

    @property
    def report(self) -> Path:
        return self.root / REPORT


def is_osteomet_dir(path: str | Path) -> bool:
    """True for a run directory, a stage folder, or a folder inside either."""
    path = Path(path).resolve()
    for folder in (path, *path.parents):
        if (folder / MARKER).is_file() or (folder / STAGE_RECORD).is_file():
            return True
    return False


def open_run_dir(path: str | Path, kind: str) -> Path:
    """Create ``path`` as a run directory, or reopen one; refuse a non-empty folder that is not ours."""
    path = Path(path)
    marker = path / MARKER
    if path.exists():
        if not path.is_dir():
            raise OutputExistsError(f"{path}: exists and is not a directory")
        if any(path.iterdir()) and not is_osteomet_dir(path):
            raise OutputExistsError(
                f"{path}: folder is not empty and is not an osteomet run directory; choose a new --out"
            )
    path.mkdir(parents=True, exist_ok=True)
    if not marker.exists() and not (path / STAGE_RECORD).exists():
        write_json_atomic(marker, {"kind": kind, "osteomet": __version__})
    return path
