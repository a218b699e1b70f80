"""Report section of the applicability domain: how often the study's own patients fall outside it, per split.

Why: a domain check is only useful if it is calibrated. On the reference population (training
patients judged out-of-fold, validation and test) it should flag few patients (the price of
the check); on the external centre its rate is the shift the domain sees (another vendor's
intensity scale, another protocol), and the decision model's Brier score within and outside
says whether that shift costs accuracy. The missingness table says which clinical values the
models learned to handle missing (those missing in training) and which they never saw missing.
"""

from __future__ import annotations

import pandas as pd

from osteomet.layout import DOMAIN, FLAG_RATES, FLAGS, MISSINGNESS, STAGE_RECORD, RunLayout
from osteomet.report.html import CI_LABELS, Section, note, table
from osteomet.report.run_files import read_csv
from osteomet.utils.files import read_json

RATE_COLUMNS = ("split", "n", "checked", "outside", "rate", "ci_low", "ci_high", "image", "mask", "features",
                "brier_within", "brier_outside")
#: Most frequent failed checks shown per split.
TOP_CHECKS = 5


def applicability_section(layout: RunLayout) -> Section:
    section = Section("applicability", "Applicability domain and missing clinical values")
    folder = layout.applicability
    rates = read_csv(folder / FLAG_RATES)
    if rates is None:
        section.note = (f"no applicability/{FLAG_RATES} (the applicability stage of osteomet run mri, "
                        f"applicability.enabled: true)")
        return section
    domain = read_json(folder / DOMAIN) or {}
    settings = f"margin {domain.get('margin', '?')}, feature quantile {domain.get('quantile', '?')}"
    distances = ", ".join(f"{d['label']}s ({len(d['columns'])}, threshold {d['threshold']:.2f})"
                          for d in domain.get("distances") or [])
    parts = [note(f"Every study patient measured as predict measures a new one and checked against the training "
                  f"patients ({domain.get('n_train', '?')}; {settings}): image geometry and orientation, raw "
                  f"intensity percentiles in the tumour mask and a gland region, mask volume, components and "
                  f"position (ranges: training minimum to maximum widened on each side), and the Ledoit-Wolf "
                  f"Mahalanobis distance of "
                  + (distances or "no feature group") + " against the quantile of cross-validated training "
                  "distances. Training patients are judged out-of-fold. Outside: the share of checked patients "
                  "outside the domain (Wilson 95% CI); image, mask, features: patients failing a check of that group; "
                  "Brier: the decision model's Brier score within and outside.")]
    parts.append(table(rates, RATE_COLUMNS, labels={**CI_LABELS, "split": "cohort", "rate": "outside share",
                                                   "outside": "outside", "brier_within": "Brier within",
                                                   "brier_outside": "Brier outside"}))
    flags = read_csv(folder / FLAGS)
    if flags is not None and "failed" in flags:
        labels = {c["name"]: c["quantity"]["label"] for c in [*(domain.get("ranges") or []),
                                                              *(domain.get("categories") or [])]}
        labels.update({d["name"]: f"{d['label']} distance" for d in domain.get("distances") or []})
        rows = []
        for split, part in flags.groupby("split", sort=False):
            names = part["failed"].dropna().astype(str).str.split(";").explode()
            names = names[names != ""]
            for name, count in names.value_counts().head(TOP_CHECKS).items():
                rows.append({"split": split, "check": labels.get(name, name), "patients": int(count),
                             "of": int((part["applicability"] != "not checked").sum())})
        if rows:
            parts.append(f"<h3>Most frequent reasons (up to {TOP_CHECKS} per cohort)</h3>"
                         + table(pd.DataFrame(rows), ("split", "check", "patients", "of"),
                                 labels={"split": "cohort", "of": "checked"}))
    missingness = read_json(folder / MISSINGNESS)
    if missingness:
        splits = missingness.get("splits") or {}
        order = [s for s in ("val", "test", "external") if s in splits] + \
            sorted(set(splits) - {"train", "val", "test", "external"})
        rows = []
        for column in missingness.get("columns") or []:
            row = {"variable": column, "train missing": (missingness["training"].get(column) or {}).get("share")}
            row.update({f"{split} missing": (splits[split].get("share") or {}).get(column) for split in order})
            kind = (missingness.get("plausible") or {}).get(column) or {}
            row["plausible values"] = ", ".join(f"{v:.4g}" for v in kind.get("values", []))
            rows.append(row)
        frame = pd.DataFrame(rows)
        parts.append("<h3>Missing clinical values (share per cohort)</h3>"
                     + note("A variable never missing in training has a 'missing' direction in the XGBoost trees "
                            "that no data chose; predict states how far each missing value can move a prediction "
                            "over its plausible values (training categories, or the 10th/50th/90th percentiles).")
                     + table(frame, list(frame.columns)))
    record = (read_json(folder / STAGE_RECORD) or {}).get("summary") or {}
    if record.get("skipped"):
        parts.append(note("Checks left out (too few training values): "
                          + "; ".join(f"{k}: {v}" for k, v in record["skipped"].items())))
    section.body = "".join(parts)
    return section


__all__ = ["applicability_section"]
