"""Decision curve analysis: net benefit of acting on a model's predictions (Vickers & Elkin 2006).

At threshold probability ``pt`` (the risk at which one would act: here, work up bone
metastasis), a patient is treated when ``p >= pt`` and

    net benefit = TP / n - FP / n * pt / (1 - pt)

with the two reference strategies "treat all" (``prevalence - (1 - prevalence) * pt / (1 - pt)``)
and "treat none" (0). A model is useful at ``pt`` where its net benefit exceeds both.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from osteomet.evaluation._validate import labels_and_scores
from osteomet.evaluation.errors import EvaluationInputError

DEFAULT_THRESHOLDS = tuple(np.round(np.arange(0.01, 1.0, 0.01), 2))


def net_benefit(y: Any, probs: Any, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> pd.DataFrame:
    """``threshold, model, treat_all, treat_none`` net benefits, one row per threshold in (0, 1)."""
    labels, p = labels_and_scores(y, probs, scores_name="probabilities", both_classes=False)
    pts = np.asarray(thresholds, dtype=float)
    if ((pts <= 0) | (pts >= 1)).any():
        raise EvaluationInputError("decision-curve thresholds must lie strictly between 0 and 1")
    n, prevalence = labels.size, labels.mean()
    odds = pts / (1 - pts)
    treated = p[None, :] >= pts[:, None]
    tp = (treated & labels[None, :]).sum(axis=1) / n
    fp = (treated & ~labels[None, :]).sum(axis=1) / n
    return pd.DataFrame({"threshold": pts, "model": tp - fp * odds, "treat_all": prevalence - (1 - prevalence) * odds,
                         "treat_none": 0.0})
