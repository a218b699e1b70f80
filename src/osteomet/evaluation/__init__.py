"""Statistics for the osteomet studies, each checked against a reference implementation.

ROC/AUC and DeLong (pROC 1.18, ``direction = "<"``: higher score = case), bootstrap CIs,
threshold metrics at a fixed threshold (``score >= threshold`` is positive), Holm/BH
adjustment (R ``p.adjust``), per-case segmentation overlap and paired model comparison,
ICC (psych::ICC), and the cohort characteristics table (scipy/statsmodels).
All functions take plain arrays or DataFrames and return numbers or tidy DataFrames.
"""

from osteomet.evaluation.bootstrap import (
    Interval,
    bootstrap_ci,
    bootstrap_mean,
    bootstrap_threshold_metrics,
    resample_indices,
)
from osteomet.evaluation.cohort import characteristics_table, write_characteristics_csv
from osteomet.evaluation.delong import (
    AUCInterval,
    DeLongTest,
    delong_ci,
    delong_covariance,
    delong_test,
    delong_test_unpaired,
)
from osteomet.evaluation.errors import EvaluationInputError
from osteomet.evaluation.icc import ICCResult, feature_class, feature_icc, icc, icc_table, summarize_by_class
from osteomet.evaluation.metrics_table import evaluate_model
from osteomet.evaluation.multitest import benjamini_hochberg, holm
from osteomet.evaluation.roc import auc, roc_curve, youden_threshold
from osteomet.evaluation.segmentation import compare_models, overlap
from osteomet.evaluation.threshold import threshold_metrics

__all__ = [
    "AUCInterval",
    "DeLongTest",
    "EvaluationInputError",
    "ICCResult",
    "Interval",
    "auc",
    "benjamini_hochberg",
    "bootstrap_ci",
    "bootstrap_mean",
    "bootstrap_threshold_metrics",
    "characteristics_table",
    "compare_models",
    "delong_ci",
    "delong_covariance",
    "delong_test",
    "delong_test_unpaired",
    "evaluate_model",
    "feature_class",
    "feature_icc",
    "holm",
    "icc",
    "icc_table",
    "overlap",
    "resample_indices",
    "roc_curve",
    "summarize_by_class",
    "threshold_metrics",
    "write_characteristics_csv",
    "youden_threshold",
]
