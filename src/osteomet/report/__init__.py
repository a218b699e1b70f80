"""The HTML study report, built only from the files of a run directory (see osteomet.layout)."""

from osteomet.report.build import build_report

__all__ = ["build_report"]
