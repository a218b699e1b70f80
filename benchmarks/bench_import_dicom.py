"""Time the header scan of `osteomet import dicom` on a generated export of 10,000 DICOM files (goal: < 30 s on 2 cores).

The export is copies of the real ProstateX series (T2, ADC, high-b; ../shared/data) under new
PatientIDs and UIDs, nested <patient>/<study>/<series>/<SOP UID> as PACS exports write them, plus
the real CT series; generating it is not timed. The scan (headers only, every core) is timed
cold-ish (first pass) and warm (best of the rest), then the classification and choice, then a
whole import (scan, choice, manifests and reports written).

Usage: .venv/bin/python benchmarks/bench_import_dicom.py [--files 10000] [--jobs N] [--repeat 3] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from osteomet.data.dicom_tree import available_cpus, scan_tree
from osteomet.data.series_rules import choose, classify, load_rules

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
GOAL_S = 30.0


def generate(root: Path, n_files: int) -> int:
    """Write about ``n_files`` DICOM files under ``root``; returns how many were written."""
    series = []
    for patient in ("ProstateX-0000", "ProstateX-0001"):
        for kind in ("t2w", "adc", "hbv"):
            series.append([pydicom.dcmread(p) for p in sorted((SHARED / "mri" / "prostatex" / patient / kind)
                                                             .glob("*.dcm"))])
    ct = sorted((SHARED / "ct" / "totalseg_dicom" / "ct").iterdir())
    (root / "ct").mkdir(parents=True)
    for file in ct:
        shutil.copy(file, root / "ct" / file.name)
    written, index = len(ct), 0
    while written < n_files:
        source = series[(index % 2) * 3:(index % 2) * 3 + 3]
        patient_id, study_uid = f"BENCH{index:05d}", generate_uid()
        study = root / patient_id / study_uid[-12:]
        for datasets in source:
            if written >= n_files:
                break
            series_uid = generate_uid()
            folder = study / series_uid[-12:]
            folder.mkdir(parents=True)
            for ds in datasets[: n_files - written]:
                ds.PatientID = ds.PatientName = patient_id
                ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
                ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
                ds.save_as(folder / ds.SOPInstanceUID, enforce_file_format=True)
                written += 1
        index += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=None, help="worker processes (default: every CPU)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", type=Path, default=None, help="generate into this folder and keep it")
    args = parser.parse_args()
    tmp = None if args.keep else tempfile.TemporaryDirectory()
    root = args.keep or Path(tmp.name) / "export"  # type: ignore[union-attr]
    try:
        start = time.perf_counter()
        n = generate(root, args.files) if not root.exists() else sum(1 for p in root.rglob("*") if p.is_file())
        print(f"generated {n} files in {time.perf_counter() - start:.1f} s (not timed)")
        rules = load_rules()
        jobs = args.jobs or available_cpus()
        times = []
        for _ in range(max(1, args.repeat)):
            result = scan_tree(root, settings=rules.scan_settings(), jobs=jobs)
            times.append(result.seconds)
        start = time.perf_counter()
        classes = {s.key: classify(s, rules) for s in result.series}
        by_patient: dict[str, list] = {}
        for s in result.series:
            by_patient.setdefault(s.patient_key, []).append(s)
        for members in by_patient.values():
            names = {k: f"S{i + 1}" for i, k in enumerate(sorted({s.study_key for s in members}))}
            choose(members, classes, rules, names)
        choice = time.perf_counter() - start
        from osteomet.pipeline.import_dicom import import_dicom

        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            summary = import_dicom(root, Path(out) / "study", jobs=jobs, log=lambda _: None)
            whole = time.perf_counter() - start
        best = min(times)
        print(f"scan of {result.n_files} files ({result.n_dicom} DICOM, {len(result.series)} series, "
              f"{len(by_patient)} patients) with {jobs} processes: first {times[0]:.1f} s, best {best:.1f} s "
              f"({result.n_files / best:.0f} files/s)")
        print(f"classification and choice: {choice:.2f} s; whole import (scan, choice, manifests): {whole:.1f} s, "
              f"{len(summary.mri_complete)} bpMRI and {len(summary.ct)} CT patients")
        print(f"goal < {GOAL_S:.0f} s for 10,000 files; ratio goal/first scan = {GOAL_S / times[0]:.1f}")
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
