"""The report's patient-flow section: from the manifest to the evaluation, as CLEAR and TRIPOD+AI ask."""

from __future__ import annotations

import json

from osteomet.layout import FLOW_FIGURE, FLOW_RECORD, FLOW_TABLE, RunLayout
from osteomet.report.html import Section, note, table
from osteomet.report.run_files import png_figures, read_csv


def flow_section(layout: RunLayout) -> Section:
    section = Section("flow", "Patient flow")
    flow = read_csv(layout.flow / FLOW_TABLE)
    if flow is None:
        section.note = f"no flow/{FLOW_TABLE} (osteomet run mri)"
        return section
    record = json.loads((layout.flow / FLOW_RECORD).read_text(encoding="utf-8")) if (layout.flow / FLOW_RECORD).is_file() else {}
    rule = ("every model is evaluated on the patients of a cohort that every model scored, so the AUC table and the "
            "DeLong tests use one patient set per cohort" if record.get("evaluation_patients", "common") == "common"
            else "each model is evaluated on the patients it scored")
    parts = [note(f"{record.get('manifest', len(flow))} patients in the manifest, {record.get('excluded', 0)} excluded, "
                  f"{record.get('evaluated', int(flow['evaluated'].sum()))} evaluated; {rule}."),
             png_figures([(layout.flow / FLOW_FIGURE, "Patient flow: manifest, exclusions, splits and centres, "
                                                     "patients scored by each model and evaluated")])]
    excluded = flow[flow["excluded"].astype(bool)]
    left = flow[~flow["evaluated"].astype(bool) & ~flow["excluded"].astype(bool)]
    parts.append("<h3>Excluded patients</h3>"
                 + table(excluded, ("patient_id", "split", "centre", "excluded_reason"),
                         labels={"excluded_reason": "reason"}))
    parts.append("<h3>Patients not evaluated (not scored by every model)</h3>"
                 + table(left, ("patient_id", "split", "centre", "not_evaluated_reason"),
                         labels={"not_evaluated_reason": "reason"}))
    section.body = "".join(parts)
    return section
