"""Patient-level generative model shared by the synthetic bpMRI cohort.

Labels are drawn first (per-centre prevalence of the reproduced study), then clinical
variables from the study's published marginals given the label (age, hematuria and
leukocyturia carry almost no signal, as in the study's multivariable analysis), then the
index tumour's imaging phenotype.

Imaging signal model: one latent *aggressiveness* per tumour,
``a = 0.3 * (ISUP - 3) + 1.8 * BM + N(0, 1)``. The grade term is shared with the clinical
variables; the BM term is what only imaging sees, so imaging adds information beyond the
clinical model (a clinical model reaches AUC ~0.7-0.78, as in the study). Each trait
follows ``a`` with its own noise: volume (log-normal, 0.4-10 mL), ADC (0.97 - 0.085 a,
x10^-3 mm2/s: non-BM ~0.97, BM ~0.80), T2 signal (darker), DWI S0 (brighter on high-b),
heterogeneity of the T2/ADC/DWI texture, and extraprostatic extension (logistic in ``a``).
``osteomet.data.synth.mri`` renders these into the T2, DWI and ADC volumes, so a model
learns them from the images (partial volume and noise included), not from hidden columns.
On the phenotype itself (4,000 patients) ``a`` alone separates BM with AUC ~0.92; each
trait alone 0.64-0.89. Sources: shared/docs/domain-facts.md.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: BM prevalence per centre in the reproduced study (95/318 and 41/96).
CENTRE_PREVALENCE = {"C1": 95 / 318, "C2": 41 / 96}
#: Share of patients from the external centre (96 of 414).
EXTERNAL_FRACTION = 96 / 414

# Gleason score distribution given BM (Gleason >=8 split into 8 / 9-10 by ISUP 4 / 5).
_GLEASON = np.array([6, 7, 8, 9, 10])
_GLEASON_P = {
    1: np.array([1.4, 20.6, 33.1, 29.9, 15.0]),
    0: np.array([21.6, 32.4, 23.4, 15.1, 7.6]),
}
# PSA category (<10, 10-100, >100 ng/mL) given BM, and the upper bound of the top category
# chosen so that the category means reproduce the reported PSA means (169.6 vs 55.2).
_PSA_CAT_P = {1: np.array([12.5, 43.4, 44.1]), 0: np.array([16.9, 69.8, 13.3])}
_PSA_TOP = {1: 1000.0, 0: 400.0}
_AGE_MEAN = {1: 71.4, 0: 70.9}
_HEMATURIA = {1: 0.286, 0: 0.255}
_LEUKOCYTURIA = {1: 0.397, 0: 0.336}


def draw_labels(n: int, prevalence: float, rng: np.random.Generator, *, min_per_class: int = 1) -> np.ndarray:
    """Exactly round(n * prevalence) positives in random order, so tiny cohorts keep both classes.

    Each class gets at least ``min_per_class`` patients where ``n`` allows it (else at least one).
    """
    n_pos = int(round(n * prevalence))
    floor = min_per_class if n >= 2 * min_per_class else 1
    if n >= 2:
        n_pos = min(max(n_pos, floor), n - floor)
    labels = np.zeros(n, dtype=int)
    labels[:n_pos] = 1
    rng.shuffle(labels)
    return labels


def isup_from_gleason(gleason: int, rng: np.random.Generator, bm: int) -> int:
    """ISUP grade group from the Gleason score; Gleason 7 is 3+4 (ISUP 2) or 4+3 (ISUP 3)."""
    if gleason == 6:
        return 1
    if gleason == 7:
        return 3 if rng.random() < (0.6 if bm else 0.4) else 2
    return 4 if gleason == 8 else 5


def _log_uniform(low: float, high: float, rng: np.random.Generator) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def sample_clinical(label: int, rng: np.random.Generator) -> dict:
    """One patient's clinical variables given the BM label."""
    gleason = int(rng.choice(_GLEASON, p=_GLEASON_P[label] / _GLEASON_P[label].sum()))
    category = int(rng.choice(3, p=_PSA_CAT_P[label] / _PSA_CAT_P[label].sum()))
    psa = [
        lambda: _log_uniform(1.5, 10.0, rng),
        lambda: _log_uniform(10.0, 100.0, rng),
        lambda: _log_uniform(100.0, _PSA_TOP[label], rng),
    ][category]()
    return {
        "age": float(np.clip(np.round(rng.normal(_AGE_MEAN[label], 7.0)), 45, 92)),
        "psa": round(psa, 2),
        "gleason": gleason,
        "isup": isup_from_gleason(gleason, rng, label),
        "hematuria": int(rng.random() < _HEMATURIA[label]),
        "leukocyturia": int(rng.random() < _LEUKOCYTURIA[label]),
    }


#: BM-specific shift of the tumour's aggressiveness (in SDs of its patient-level noise): the
#: part of the imaging signal that no clinical variable carries.
BM_IMAGING_SHIFT = 1.8
#: Weight of the ISUP grade (the part of aggressiveness the clinical model also sees).
GRADE_WEIGHT = 0.3


def tumour_aggressiveness(label: int, isup: int, rng: np.random.Generator) -> float:
    """Latent aggressiveness of the index tumour: grade (shared with the clinical variables),
    a BM-only component (imaging adds information beyond the clinical model) and patient noise."""
    return GRADE_WEIGHT * (isup - 3) + BM_IMAGING_SHIFT * label + float(rng.normal(0.0, 1.0))


def sample_tumour_phenotype(label: int, isup: int, rng: np.random.Generator) -> dict:
    """Index-tumour phenotype driven by its aggressiveness, each trait with its own noise.

    More aggressive tumours are larger, more cellular (lower ADC, brighter high-b S0), darker
    and more heterogeneous on T2 and more often extraprostatic; ranges follow domain facts
    (index tumour 0.5-10 mL, csPCa ADC 0.6-1.0 x10^-3 mm2/s, lower with higher grade).
    """
    a = tumour_aggressiveness(label, isup, rng)
    log_volume = np.log(1.2) + 0.32 * a + rng.normal(0.0, 0.45)
    adc = 0.97 - 0.085 * a + rng.normal(0.0, 0.05)
    heterogeneity = 0.06 + 0.025 * a + rng.normal(0.0, 0.02)
    t2 = 0.32 - 0.035 * a + rng.normal(0.0, 0.02)
    s0 = 0.6 * (1.0 + 0.08 * a + rng.normal(0.0, 0.05))
    epe = rng.random() < 1.0 / (1.0 + np.exp(2.3 - 0.9 * a))
    return {
        "aggressiveness": round(float(a), 4),
        "tumour_volume_ml": float(np.clip(np.exp(log_volume), 0.4, 10.0)),
        "tumour_adc": float(np.clip(adc, 0.55, 1.15)),  # x10^-3 mm2/s
        "tumour_t2": float(np.clip(t2, 0.15, 0.45)),  # relative T2 signal (gland 0.5-0.85)
        "tumour_s0": float(np.clip(s0, 0.4, 0.85)),  # relative DWI S0
        "heterogeneity": float(np.clip(heterogeneity, 0.02, 0.2)),
        "epe": int(epe),
        "zone": "PZ" if rng.random() < 0.7 else "TZ",
    }


def apply_missingness(row: dict, rate: float, rng: np.random.Generator) -> dict:
    """Blank a few clinical values at random, as real registries have gaps to report."""
    if rate <= 0:
        return row
    out = dict(row)
    for key in ("age", "psa", "hematuria", "leukocyturia"):
        if rng.random() < rate:
            out[key] = None
    return out


def sample_patients(n: int, *, seed: int = 0, centre: str = "C1", missing_rate: float = 0.0) -> pd.DataFrame:
    """Clinical variables and tumour phenotype for ``n`` patients, without images.

    Cheap enough for thousands of patients, so the statistical properties of the
    generative model can be checked directly.
    """
    rng = np.random.default_rng(seed)
    labels = draw_labels(n, CENTRE_PREVALENCE[centre], rng)
    rows = []
    for label in labels:
        clinical = sample_clinical(int(label), rng)
        phenotype = sample_tumour_phenotype(int(label), clinical["isup"], rng)
        rows.append({"label": int(label), **apply_missingness(clinical, missing_rate, rng), **phenotype})
    return pd.DataFrame(rows)
