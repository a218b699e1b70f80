"""User-input errors end as one paragraph with exit code 2; anything else is a bug and keeps its traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from osteomet.cli.main import app
from osteomet.errors import InputError, MissingInputError, OsteometError, OutputExistsError

runner = CliRunner()


def test_user_errors_are_also_the_builtin_kind() -> None:
    assert issubclass(InputError, ValueError) and issubclass(MissingInputError, FileNotFoundError)
    assert issubclass(OutputExistsError, FileExistsError)
    assert all(issubclass(e, OsteometError) for e in (InputError, MissingInputError, OutputExistsError))


def test_an_input_problem_is_a_message_and_exit_2(tmp_path: Path) -> None:
    result = runner.invoke(app, ["manifest", "check", str(tmp_path / "missing.csv")])
    assert result.exit_code == 2 and "missing.csv" in result.output and "Traceback" not in result.output


def test_a_bug_is_not_disguised_as_an_input_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import osteomet.data.manifest as manifest

    def broken(*args, **kwargs):
        raise ValueError("an internal invariant failed")  # a plain ValueError is a bug, not the user's fault

    monkeypatch.setattr(manifest, "read_manifest", broken)
    result = runner.invoke(app, ["manifest", "check", str(tmp_path / "m.csv")])
    assert result.exit_code == 1 and isinstance(result.exception, ValueError)


def test_python_dash_m_osteomet_runs_the_cli() -> None:
    result = subprocess.run([sys.executable, "-m", "osteomet", "--help"], capture_output=True, encoding="utf-8",
                            errors="replace", timeout=60)
    assert result.returncode == 0 and "Usage: osteomet" in result.stdout


def test_output_path_through_a_file_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    """`-o` naming a path inside a file (a typo for a folder) ends as one paragraph naming the path."""
    from osteomet.data.synth.mri import generate_mri_cohort

    manifest = generate_mri_cohort(tmp_path / "cohort", 10, seed=3)
    blocker = tmp_path / "results"
    blocker.write_text("the user's notes\n")
    result = runner.invoke(app, ["split", "-m", str(manifest), "--replace", "-o", str(blocker / "m2.csv")])
    flat = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "Traceback" not in flat and "results" in flat and "in the way of a folder" in flat
    assert blocker.read_text(encoding="utf-8") == "the user's notes\n"


def test_file_system_refusals_are_described_and_other_os_errors_are_not() -> None:
    import errno

    from osteomet.errors import describe_os_error

    too_long = OSError(errno.ENAMETOOLONG, "File name too long", "x" * 300)
    assert "255 bytes" in describe_os_error(too_long) and "x" * 300 in describe_os_error(too_long)
    assert "part of the path is a file" in describe_os_error(NotADirectoryError(errno.ENOTDIR, "Not a directory", "a/b"))
    assert "disk is full" in describe_os_error(OSError(errno.ENOSPC, "No space left on device", "RUN/x.npy"))
    assert describe_os_error(OSError(errno.EIO, "Input/output error", "x")) is None  # not the user's doing


def test_a_message_with_brackets_keeps_them() -> None:
    """Console markup must not swallow a list in a message (`split.ratios ... got [6, 1, -3]`)."""
    import typer
    from click.testing import CliRunner as ClickRunner

    from osteomet.cli._common import user_errors

    app_ = typer.Typer()

    @app_.command()
    def fail() -> None:
        with user_errors():
            raise InputError("study.yaml: split.ratios must be positive, got [6, 1, -3] [bold]x[/bold]")

    result = ClickRunner().invoke(typer.main.get_command(app_), [])
    assert result.exit_code == 2
    assert "got [6, 1, -3] [bold]x[/bold]" in " ".join(result.output.split())
