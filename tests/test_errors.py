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
