"""Every core by default: ``--jobs`` and a study's ``jobs`` default to the cores this process may use."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from osteomet.utils.cores import JOBS_ENV, available_cores, default_jobs, resolve_jobs, worker_threads


def test_the_default_is_every_core_the_process_may_use_and_follows_its_affinity():
    assert available_cores() == len(os.sched_getaffinity(0))
    # a process pinned to one core (taskset, SLURM, a container) gets one job and a study with one worker
    probe = ("import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
             "from osteomet.pipeline.study import load_study_config; "
             "from osteomet.pipeline.ct_study import load_ct_study_config; "
             "print(load_study_config('tiny').jobs, load_study_config('default').jobs, load_ct_study_config('tiny').jobs)")
    env = {k: v for k, v in os.environ.items() if k != JOBS_ENV}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "1", "1"]


def test_osteomet_jobs_caps_the_default_and_an_explicit_value_wins(monkeypatch, tmp_path):
    from osteomet.pipeline.ct_study import CTStudyConfig
    from osteomet.pipeline.study import StudyConfig, load_study_config, override_study

    monkeypatch.setenv(JOBS_ENV, "3")
    assert default_jobs() == 3 and resolve_jobs(None) == 3 and resolve_jobs(5) == 5
    assert StudyConfig().jobs == 3 and CTStudyConfig().jobs == 3
    assert load_study_config("tiny").jobs == 3  # the presets leave jobs to the machine
    (tmp_path / "null.yaml").write_text("jobs: null\n", encoding="utf-8")
    (tmp_path / "one.yaml").write_text("jobs: 1\n", encoding="utf-8")
    assert load_study_config(tmp_path / "null.yaml").jobs == 3
    assert load_study_config(tmp_path / "one.yaml").jobs == 1
    assert override_study(load_study_config(tmp_path / "one.yaml"), jobs=4).jobs == 4
    for bad in ("two", "0", "-1"):
        monkeypatch.setenv(JOBS_ENV, bad)
        with pytest.raises(ValueError, match=f"{JOBS_ENV}='{bad}'"):
            default_jobs()


def test_workers_share_the_cores_and_a_lone_task_gets_them_all(monkeypatch):
    monkeypatch.setattr("osteomet.utils.cores.available_cores", lambda: 8)
    assert worker_threads(1) == 8
    assert worker_threads(4) == 2
    assert worker_threads(4, tasks=1) == 8  # one architecture: no idle workers holding cores
    assert worker_threads(4, tasks=2) == 4
    assert worker_threads(16) == 1


def test_no_command_defaults_jobs_to_one_and_reading_the_default_imports_no_torch():
    import re
    from pathlib import Path

    import osteomet.cli

    fixed = [f"{path.name}: {m.group(0)}" for path in Path(osteomet.cli.__file__).parent.glob("*.py")
             for m in re.finditer(r"jobs: [^=]+= typer\.Option\(\s*\d", path.read_text(encoding="utf-8"))]
    assert not fixed, fixed
    probe = "import sys; import osteomet.cli.main, osteomet.utils.cores; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr
