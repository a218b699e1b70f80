"""benchmarks/gpu_check.py on the CPU with tiny shapes: what CI runs so the GPU check does not rot between loans."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = "benchmarks/gpu_check.py"
SECTIONS = ("unetr", "resnet", "pipeline", "predict", "ct")
NUMBER_ROW = re.compile(r"^(\w+)\s+.+?\s(\d+(?:\.\d+)?(?:e[-+]?\d+)?)\s+(s/step|s/volume|crops/s|patches/s|x|s|s/patient)\b")


def test_tiny_cpu_run_prints_a_number_or_a_skip_reason_for_every_section(tmp_path: Path):
    """Exit 0, every section a measured number or an explicit skip (section 4 without --study), nothing failed."""
    report = tmp_path / "rows.json"
    start = time.perf_counter()
    done = subprocess.run([sys.executable, SCRIPT, "--device", "cpu", "--tiny", "--json", str(report)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    seconds = time.perf_counter() - start
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("device: cpu; torch ") and "CUDA" in lines[0]
    assert lines[1].startswith("host CPU: ")
    assert "FAILED" not in done.stdout
    for section in SECTIONS:
        rows = [line for line in lines if line.split(" ", 1)[0] == section]
        numbers = [float(m.group(2)) for line in rows if (m := NUMBER_ROW.match(line))]
        skips = [line for line in rows if "skipped: " in line]
        assert numbers or skips, f"section {section} printed neither a number nor a skip reason:\n{done.stdout}"
        assert all(n > 0 for n in numbers), rows
    assert any("skipped: give --study RUN" in line for line in lines if line.startswith("predict"))
    rows = json.loads(report.read_text(encoding="utf-8"))["rows"]
    assert {r["section"] for r in rows} == set(SECTIONS)
    # CI budget (2 cores): about 15 s on a loaded 2-core host; fail loudly only when it has clearly rotted
    assert seconds < 120, f"gpu_check --tiny took {seconds:.0f} s"


def test_missing_package_stops_before_timing_with_its_name(tmp_path: Path):
    """A bare torch machine without MONAI: a one-line message naming the package, exit 2, no traceback."""
    (tmp_path / "sitecustomize.py").write_text(
        "import importlib.abc, sys\n"
        "class _Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] == 'monai':\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, _Block())\n")
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, SCRIPT, "--device", "cpu", "--tiny", "--only", "resnet"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "missing Python package(s): monai" in done.stderr
    assert "Traceback" not in done.stderr
    assert "section" not in done.stdout  # stopped before the table
