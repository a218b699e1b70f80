"""One process at a time in a run directory: a second `run` is refused, a killed holder leaves no stale lock."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from osteomet.cli.main import app
from osteomet.layout import open_run_dir
from osteomet.utils.run_lock import LOCK, run_lock

HOLDER = """
import sys, time
from osteomet.utils.run_lock import run_lock
with run_lock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(120)
"""


def _hold(run: Path) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(run)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_second_run_in_the_same_folder_is_refused_naming_the_holder_and_a_killed_holder_frees_it(tmp_path):
    run = open_run_dir(tmp_path / "run", kind="ct")
    holder = _hold(run)
    try:
        refused = CliRunner().invoke(app, ["run", "ct", "-m", str(tmp_path / "manifest.csv"), "-o", str(run),
                                           "--config", "tiny"])
        said = " ".join(refused.output.split())
        assert refused.exit_code == 2 and f"pid {holder.pid}" in said and "another osteomet process" in said, said
        assert "Traceback" not in refused.output
        assert sorted(p.name for p in run.iterdir()) == sorted([LOCK, "osteomet-run.json"])  # no stage started
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    deadline = time.monotonic() + 10
    while True:  # the kernel dropped the killed process's lock: no stale lock file to clean by hand
        try:
            with run_lock(run):
                break
        except Exception:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_the_lock_is_released_when_the_block_ends_or_raises(tmp_path):
    for _ in range(2):
        try:
            with run_lock(tmp_path):
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            pass
    with run_lock(tmp_path) as path:
        assert path.read_text(encoding="utf-8").strip().isdigit()
