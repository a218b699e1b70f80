"""The stage API: guards, settings in one form, skip when nothing changed, rerun when something did."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from osteomet.errors import OutputExistsError
from osteomet.layout import SETTINGS, STAGE_RECORD, open_run_dir
from osteomet.stage import Stage, refuse_overwriting_inputs
from osteomet.utils.files import read_json


def _stage(out: Path, source: Path, threshold: float = 0.5) -> Stage:
    return Stage("count-lines", out, settings={"threshold": threshold}, inputs={"source": source},
                 outputs=("counts.txt",))


def _work(out: Path, source: Path, calls: list[int]):
    def work() -> dict:
        calls.append(1)
        n = len(source.read_text(encoding="utf-8").splitlines())
        (out / "counts.txt").write_text(str(n))
        return {"lines": n}
    return work


def test_a_stage_runs_once_then_is_skipped_until_an_input_or_setting_changes(tmp_path: Path) -> None:
    source, out, calls = tmp_path / "in.txt", tmp_path / "stage", []
    source.write_text("a\nb\n")
    first = _stage(out, source).run(_work(out, source, calls))
    assert not first.skipped and first.summary == {"lines": 2} and len(calls) == 1
    assert yaml.safe_load((out / SETTINGS).read_text(encoding="utf-8")) == {"threshold": 0.5}
    record = read_json(out / STAGE_RECORD)
    assert record["status"] == "complete" and record["stage"] == "count-lines" and "osteomet" in record["versions"]

    again = _stage(out, source).run(_work(out, source, calls))
    assert again.skipped and again.summary == {"lines": 2} and len(calls) == 1

    _stage(out, source, threshold=0.6).run(_work(out, source, calls))  # a changed setting reruns
    assert len(calls) == 2
    source.write_text("a\nb\nc\n")
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 1_000_000))
    rerun = _stage(out, source, threshold=0.6).run(_work(out, source, calls))  # a changed input reruns
    assert not rerun.skipped and rerun.summary == {"lines": 3} and len(calls) == 3


def test_an_interrupted_stage_is_not_taken_as_done(tmp_path: Path) -> None:
    source, out, calls = tmp_path / "in.txt", tmp_path / "stage", []
    source.write_text("a\n")

    def crash() -> dict:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _stage(out, source).run(crash)
    assert read_json(out / STAGE_RECORD)["status"] == "running"
    assert not _stage(out, source).run(_work(out, source, calls)).skipped and calls == [1]


def test_an_upstream_stage_change_reaches_the_next_stage(tmp_path: Path) -> None:
    source, upstream, downstream = tmp_path / "in.txt", tmp_path / "up", tmp_path / "down"
    source.write_text("a\n")
    calls: list[int] = []
    _stage(upstream, source).run(_work(upstream, source, calls))
    after = Stage("after", downstream, inputs={"up": upstream})
    assert not after.run(lambda: {}).skipped
    assert Stage("after", downstream, inputs={"up": upstream}).run(lambda: {}).skipped
    _stage(upstream, source, threshold=0.9).run(_work(upstream, source, calls))
    assert not Stage("after", downstream, inputs={"up": upstream}).run(lambda: {}).skipped


def test_a_users_folder_and_an_input_are_never_overwritten(tmp_path: Path) -> None:
    users = tmp_path / "mine"
    users.mkdir()
    (users / "features.csv").write_text("patient_id,x\nP1,1\n")
    with pytest.raises(OutputExistsError, match="not written by osteomet"):
        Stage("radiomics-extract", users).run(lambda: {})
    assert (users / "features.csv").read_text(encoding="utf-8") == "patient_id,x\nP1,1\n" and not (users / SETTINGS).exists()

    out = tmp_path / "eval"
    out.mkdir()
    Stage("evaluate", out).run(lambda: {})  # now an osteomet stage folder
    (out / "metrics.csv").write_text("kept")
    with pytest.raises(OutputExistsError, match="overwrite an input"):
        Stage("evaluate", out, inputs={"predictions": [out / "metrics.csv"]}, outputs=("metrics.csv",)).run(lambda: {})
    assert (out / "metrics.csv").read_text(encoding="utf-8") == "kept"
    with pytest.raises(OutputExistsError, match="holds the output of `evaluate`"):
        Stage("radiomics-extract", out).run(lambda: {})
    table = tmp_path / "manifest.csv"
    table.write_text("x")
    with pytest.raises(OutputExistsError, match="overwrite an input"):
        refuse_overwriting_inputs([tmp_path / "." / "manifest.csv"], [table])


def test_run_directory_marker(tmp_path: Path) -> None:
    run = open_run_dir(tmp_path / "run", "demo")
    Stage("inside", run / "preprocess").run(lambda: {})  # stage folders inside a run are osteomet's
    users = tmp_path / "data"
    users.mkdir()
    (users / "scan.nii.gz").write_bytes(b"x")
    with pytest.raises(OutputExistsError, match="not an osteomet run directory"):
        open_run_dir(users, "demo")


def test_an_input_error_leaves_no_new_folder_behind(tmp_path: Path) -> None:
    from osteomet.errors import InputError

    def bad_input() -> dict:
        (tmp_path / "new" / "partial.csv").write_text("x")
        raise InputError("the mask is not binary")

    with pytest.raises(InputError):
        Stage("ct-lesions", tmp_path / "new").run(bad_input)
    assert not (tmp_path / "new").exists()
    kept = tmp_path / "kept"
    Stage("ct-lesions", kept).run(lambda: {})
    with pytest.raises(InputError):
        Stage("ct-lesions", kept, settings={"changed": True}).run(lambda: (_ for _ in ()).throw(InputError("bad")))
    assert read_json(kept / STAGE_RECORD)["status"] == "running"  # an existing folder stays, marked not done


def test_partial_work_is_continued_after_an_interruption_and_discarded_when_an_input_changed(tmp_path: Path) -> None:
    source, out = tmp_path / "in.txt", open_run_dir(tmp_path / "run", kind="test") / "train"
    source.write_text("a\n")
    seen: list[bool] = []

    def train(crash: bool):
        def work() -> dict:
            seen.append((out / "checkpoints" / "last.pt").is_file())
            (out / "checkpoints").mkdir(exist_ok=True)
            (out / "checkpoints" / "last.pt").write_text("epoch 1")
            if crash:
                raise KeyboardInterrupt
            return {}
        return work

    with pytest.raises(KeyboardInterrupt):
        _stage(out, source).run(train(crash=True), partial=("checkpoints",))
    assert _stage(out, source).state() == "interrupted"
    outcome = _stage(out, source).run(train(crash=False), partial=("checkpoints",))
    assert seen == [False, True] and outcome.how == "done (continued after an interruption)"
    source.write_text("b\n")  # same size, other contents and time: another input
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 1_000_000))
    assert _stage(out, source).state() == "changed"
    outcome = _stage(out, source).run(train(crash=False), partial=("checkpoints",))
    assert seen == [False, True, False] and outcome.how == "done (rerun: its inputs or settings changed)"


def test_a_copied_or_moved_run_directory_is_up_to_date(tmp_path: Path) -> None:
    """Paths inside the run count relative to it, its files by contents: a copy with new times is up to date,
    and an edited file inside it is not."""
    import shutil

    source = tmp_path / "in.txt"
    source.write_text("a\nb\n")
    run = open_run_dir(tmp_path / "run", kind="test")
    first, second = run / "first", run / "second"
    _stage(first, source).run(_work(first, source, []))
    made = first / "counts.txt"

    def downstream(root: Path) -> Stage:
        return Stage("read-counts", root / "second", settings={"table": str(root / "first" / "counts.txt")},
                     inputs={"counts": root / "first" / "counts.txt"})

    downstream(run).run(lambda: {})
    copy = tmp_path / "copy"
    shutil.copytree(run, copy, copy_function=shutil.copy)
    assert made.stat().st_mtime_ns != (copy / "first" / "counts.txt").stat().st_mtime_ns
    assert _stage(copy / "first", source).up_to_date() and downstream(copy).up_to_date()
    moved = tmp_path / "moved"
    copy.rename(moved)
    assert downstream(moved).up_to_date()
    (moved / "first" / "counts.txt").write_text("3")
    assert downstream(moved).state() == "changed"
    assert second.is_dir()
