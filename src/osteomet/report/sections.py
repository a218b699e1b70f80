"""The report's sections in page order: one function per section, each reading a run directory's files.

The builders live by study part (:mod:`~osteomet.report.statistics_sections`,
:mod:`~osteomet.report.deep_sections`, :mod:`~osteomet.report.radiomics_sections`,
:mod:`~osteomet.report.ct_sections`, the run record's :func:`~osteomet.report.run_record.run_section`);
the model tuning, explanation and checklist sections are placed by
:func:`osteomet.report.checklist.add_study_sections`. Tables name their columns explicitly (see
:func:`osteomet.report.html.table`): nothing that a stage or a user added to a CSV, an
identifier least of all, reaches the page by accident.
"""

from __future__ import annotations

from typing import Callable

from osteomet.layout import RunLayout
from osteomet.report.ct_sections import (
    ct_detection_section,
    ct_lesions_section,
    ct_segmentation_section,
    ct_sensitivity_section,
)
from osteomet.report.deep_sections import gradcam_section, grid_section, segmentation_section
from osteomet.report.flow_section import flow_section
from osteomet.report.html import Section
from osteomet.report.radiomics_sections import icc_section, rigour_section
from osteomet.report.run_record import run_section
from osteomet.report.statistics_sections import calibration_section, cohort_section, delong_section, roc_section

#: The report's sections in page order.
SECTIONS: tuple[Callable[[RunLayout], Section], ...] = (
    flow_section, cohort_section, roc_section, delong_section, calibration_section, grid_section, gradcam_section,
    segmentation_section, rigour_section, ct_lesions_section, ct_sensitivity_section, icc_section, ct_detection_section,
    ct_segmentation_section, run_section,
)
