"""``build_report``: the study's self-contained HTML page from the files of one run directory."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from osteomet import __version__
from osteomet.errors import InputError, MissingInputError, OutputExistsError
from osteomet.layout import MARKER, REPORT, RunLayout
from osteomet.report.html import GENERATOR, Section, page
from osteomet.report.sections import SECTIONS
from osteomet.utils.files import write_text_atomic


def check_run_dir(run_dir: str | Path) -> Path:
    """The run directory, or an input error saying why it is not one."""
    run = Path(run_dir)
    if not run.exists():
        raise MissingInputError(f"{run}: folder not found; give the run directory of a study (the --out of "
                                f"`osteomet run mri` or `osteomet demo`)")
    if not run.is_dir():
        raise InputError(f"{run}: is a file; give the run directory of a study, not one of its files")
    if not (run / MARKER).is_file():
        raise InputError(f"{run}: not an osteomet run directory (no {MARKER}); give the folder that "
                         f"`osteomet run mri` or `osteomet demo` wrote")
    return run


def _check_output(out: Path) -> None:
    """Only a report written earlier by this command may be replaced."""
    if out.is_dir():
        raise OutputExistsError(f"{out}: is a folder; give a file name for the report (e.g. report.html)")
    if out.exists():
        head = out.read_bytes()[:2000].decode("utf-8", errors="replace")
        if f'name="generator" content="{GENERATOR}"' not in head:
            raise OutputExistsError(f"{out}: exists and is not a report written by osteomet; choose another --out "
                                    f"(osteomet never writes over your files)")


def build_sections(run_dir: str | Path) -> list[Section]:
    """Every section, in page order (absent ones carry their note)."""
    from osteomet.report.applicability_sections import applicability_section
    from osteomet.report.checklist import add_study_sections
    from osteomet.report.trust_sections import trust_section

    layout = RunLayout(check_run_dir(run_dir))
    sections = [make(layout) for make in SECTIONS]
    at = next((i + 1 for i, s in enumerate(sections) if s.id == "calibration"), len(sections))
    sections.insert(at, trust_section(layout))  # the prediction sets, after the calibration they complement
    sections.insert(at + 1, applicability_section(layout))  # which patients the models apply to, after them
    return add_study_sections(layout, sections)


def build_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write ``RUN/report.html`` (or ``out``) atomically; returns its path.

    Raises :class:`InputError` when the folder is not a run directory or holds nothing to report.
    """
    return write_report(run_dir, out)[0]


def write_report(run_dir: str | Path, out: str | Path | None = None) -> tuple[Path, list[Section]]:
    """:func:`build_report`, also returning the sections (the absent ones say why)."""
    run = check_run_dir(run_dir)
    target = Path(out) if out else run / REPORT
    _check_output(target)
    sections = build_sections(run)
    if not any(s.present and s.id != "run" for s in sections):
        raise InputError(f"{run}: nothing to report yet (no evaluation, model, segmentation or CT results); run "
                         f"the study's stages first")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    subtitle = f"Run directory {run.resolve().name}; written {stamp} by osteomet {__version__}."
    return write_text_atomic(target, page("osteomet study report", subtitle, sections)), sections
