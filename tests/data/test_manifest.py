"""Manifest schema: valid cohorts load, every bad row is reported with line and patient."""

from pathlib import Path

import pandas as pd
import pytest

from osteomet.data.manifest import CTRecord, ManifestError, MRIRecord, read_manifest, validate_frame, write_manifest


def _write(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def _files(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")


def _mri_row(pid: str, **overrides) -> dict:
    row = {"patient_id": pid, "centre": "C1", "label": 1, "age": 70, "psa": 12.5, "gleason": 7, "isup": 2,
           "hematuria": "no", "leukocyturia": "yes", "t2": f"{pid}_t2.nii.gz", "dwi": f"{pid}_dwi.nii.gz",
           "adc": f"{pid}_adc.nii.gz", "mask": ""}
    row.update(overrides)
    return row


def test_synthetic_cohort_manifest_is_valid(mri_cohort: Path):
    manifest = read_manifest(mri_cohort)
    assert manifest.kind == "mri" and len(manifest) == 8
    record = manifest.records[0]
    assert isinstance(record, MRIRecord)
    assert record.t2.is_absolute() and record.t2.exists() and record.mask.exists()
    assert set(manifest.to_frame()["split"]) <= {"train", "val", "test", "external"}


def test_paths_are_relative_to_the_manifest_and_values_are_parsed(tmp_path: Path):
    _files(tmp_path / "imgs", "P1_t2.nii.gz", "P1_dwi.nii.gz", "P1_adc.nii.gz")
    rows = [_mri_row("P1", t2="imgs/P1_t2.nii.gz", dwi="imgs/P1_dwi.nii.gz", adc="imgs/P1_adc.nii.gz", label="yes",
                     psa="", hematuria="1.0")]
    manifest = read_manifest(_write(tmp_path / "m.csv", rows))
    record = manifest.records[0]
    assert record.t2 == tmp_path / "imgs" / "P1_t2.nii.gz"
    assert (record.label, record.psa, record.hematuria, record.leukocyturia, record.mask) == (1, None, 1, 1, None)
    report = manifest.missing_report()
    assert report.set_index("column").loc["psa", "n_missing"] == 1
    assert any(w.startswith("psa: 1 of 1 missing") for w in manifest.warnings)


def test_every_problem_is_listed_with_line_and_patient(tmp_path: Path):
    _files(tmp_path, *(f"{p}_{s}.nii.gz" for p in ("P1", "P2", "P3", "P4") for s in ("t2", "dwi", "adc")))
    rows = [
        _mri_row("P1"),
        _mri_row("P2", age=-4, psa="high", label=2),
        _mri_row("P3", gleason=8, isup=2),
        _mri_row("P1"),  # duplicate id
        _mri_row("P4", adc=""),
        _mri_row("P5"),  # files do not exist
    ]
    with pytest.raises(ManifestError) as info:
        read_manifest(_write(tmp_path / "m.csv", rows))
    problems = info.value.problems
    text = str(info.value)
    assert "m.csv" in text
    expected = [
        "line 3 (patient 'P2'): label:",
        "line 3 (patient 'P2'): age: Input should be greater than 0",
        "line 3 (patient 'P2'): psa:",
        "line 4 (patient 'P3'): row: Gleason 8 is inconsistent with ISUP 2",
        "line 5 (patient 'P1'): duplicate patient_id, first seen on line 2",
        "line 6 (patient 'P4'): adc: required value is missing",
        "line 7 (patient 'P5'): t2: file not found",
    ]
    for fragment in expected:
        assert any(p.startswith(fragment) for p in problems), (fragment, problems)


def test_missing_columns_and_unknown_kind(tmp_path: Path):
    with pytest.raises(ManifestError, match="missing required column.*adc"):
        read_manifest(_write(tmp_path / "a.csv", [{"patient_id": "P1", "t2": "x", "dwi": "y"}]))
    with pytest.raises(ManifestError, match="neither an MRI manifest"):
        read_manifest(_write(tmp_path / "b.csv", [{"patient_id": "P1", "image": "x"}]))
    with pytest.raises(ManifestError, match="has no patient rows"):
        (tmp_path / "c.csv").write_text("patient_id,ct\n")
        read_manifest(tmp_path / "c.csv")
    with pytest.raises(ManifestError, match="manifest file does not exist"):
        read_manifest(tmp_path / "absent.csv")


def test_header_aliases_and_ct_kind(tmp_path: Path):
    _files(tmp_path, "ct.nii.gz", "les.nii.gz")
    path = _write(tmp_path / "ct.csv", [{"Patient ID": "C1", "CT": "ct.nii.gz", "lesions": "les.nii.gz", "site": "A"}])
    manifest = read_manifest(path)
    assert manifest.kind == "ct"
    record = manifest.records[0]
    assert isinstance(record, CTRecord) and record.lesion_mask == tmp_path / "les.nii.gz" and record.centre == "A"
    assert record.bone_map is None


def test_require_turns_gaps_into_errors(tmp_path: Path):
    _files(tmp_path, "P1_t2.nii.gz", "P1_dwi.nii.gz", "P1_adc.nii.gz")
    path = _write(tmp_path / "m.csv", [_mri_row("P1", label="")])
    assert read_manifest(path).records[0].label is None
    with pytest.raises(ManifestError, match=r"line 2 \(patient 'P1'\): label: required here but missing"):
        read_manifest(path, require=["label"])


def test_write_manifest_refuses_to_overwrite_and_round_trips(tmp_path: Path):
    _files(tmp_path, "P1_t2.nii.gz", "P1_dwi.nii.gz", "P1_adc.nii.gz")
    frame = pd.DataFrame([_mri_row("P1", t2=str(tmp_path / "P1_t2.nii.gz"))])
    path = write_manifest(frame, tmp_path / "manifest.csv", kind="mri")
    assert pd.read_csv(path)["t2"].iloc[0] == "P1_t2.nii.gz"  # stored relative to the manifest
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        write_manifest(frame, path, kind="mri")
    assert path.read_bytes() == before
    assert read_manifest(path).records[0].t2 == tmp_path / "P1_t2.nii.gz"


def test_write_manifest_validates_before_writing(tmp_path: Path):
    frame = pd.DataFrame([_mri_row("P1", isup=9)])
    with pytest.raises(ManifestError, match="isup"):
        write_manifest(frame, tmp_path / "manifest.csv", kind="mri")
    assert not (tmp_path / "manifest.csv").exists()


def test_validate_frame_without_file_checks():
    frame = pd.DataFrame([_mri_row("P1")]).astype(str)
    manifest = validate_frame(frame, base_dir="/data", check_files=False)
    assert manifest.records[0].t2 == Path("/data/P1_t2.nii.gz")


@pytest.mark.parametrize("pid", ["../../x", "/tmp/x", "a/b", "a\\b", "..", ".hidden", "CON", "x:y", "tab\there"])
def test_unsafe_patient_ids_are_refused(tmp_path: Path, pid: str):
    """Ids name output folders: one that climbs out of --out or is no file name must not pass."""
    _files(tmp_path, "P_t2.nii.gz", "P_dwi.nii.gz", "P_adc.nii.gz")
    row = _mri_row(pid, t2="P_t2.nii.gz", dwi="P_dwi.nii.gz", adc="P_adc.nii.gz")
    with pytest.raises(ManifestError) as info:
        read_manifest(_write(tmp_path / "m.csv", [row]))
    assert any(p.startswith(f"line 2 (patient {pid.strip()!r}): patient_id: ") and "safe file name" in p
               for p in info.value.problems), info.value.problems


def test_real_style_patient_ids_pass(tmp_path: Path):
    ids = ["ProstateX-0000", "10691_1000707", "PCa 001", "case.7"]
    _files(tmp_path, *(f"{i}_{s}.nii.gz" for i in ids for s in ("t2", "dwi", "adc")))
    assert read_manifest(_write(tmp_path / "m.csv", [_mri_row(i) for i in ids])).patient_ids == ids


def test_unsafe_id_never_reaches_preprocess_outputs(tmp_path: Path):
    """The CLI refuses the manifest (exit 2) before ``preprocess mri`` writes anything."""
    from typer.testing import CliRunner

    from osteomet.cli.main import app

    _files(tmp_path, "P_t2.nii.gz", "P_dwi.nii.gz", "P_adc.nii.gz")
    manifest = _write(tmp_path / "m.csv", [_mri_row("../escape", t2="P_t2.nii.gz", dwi="P_dwi.nii.gz", adc="P_adc.nii.gz")])
    result = CliRunner().invoke(app, ["manifest", "check", str(manifest)])
    assert result.exit_code == 2 and "'../escape'" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("separator, name", [(";", "semicolon"), ("\t", "tab")])
def test_semicolon_and_tab_separated_manifests(tmp_path: Path, separator: str, name: str):
    _files(tmp_path, "P1_t2.nii.gz", "P1_dwi.nii.gz", "P1_adc.nii.gz")
    path = tmp_path / "m.csv"
    psa = "12,5" if separator == ";" else "12.5"  # semicolon locales write decimal commas
    pd.DataFrame([_mri_row("P1", psa=psa)]).to_csv(path, index=False, sep=separator)  # as a spreadsheet saves it
    manifest = read_manifest(path)
    assert manifest.kind == "mri" and manifest.records[0].psa == 12.5 and manifest.records[0].t2 == tmp_path / "P1_t2.nii.gz"
    assert manifest.warnings[0] == f"read as {name}-separated"


def test_series_uid_columns_are_checked(tmp_path: Path):
    _files(tmp_path, "P1_t2.nii.gz", "P1_dwi.nii.gz", "P1_adc.nii.gz", "P2_t2.nii.gz", "P2_dwi.nii.gz", "P2_adc.nii.gz")
    (tmp_path / "P3_t2").mkdir()
    _files(tmp_path, "P3_dwi.nii.gz", "P3_adc.nii.gz")
    rows = [_mri_row("P1", t2_series_uid="T2 series"),
            _mri_row("P2", adc_series_uid="1.2.840.10008.1"),  # the adc is a NIfTI file, not a DICOM folder
            _mri_row("P3", t2="P3_t2", t2_series_uid="1.3.6.1.4.1.14519.5.2.1.7311.5101.1")]
    with pytest.raises(ManifestError) as info:
        read_manifest(_write(tmp_path / "m.csv", rows))
    problems = info.value.problems
    assert any(p.startswith("line 2 (patient 'P1'): t2_series_uid: 'T2 series' is not a DICOM series UID") for p in problems)
    assert any(p.startswith("line 3 (patient 'P2'): adc_series_uid: a series UID is given but adc is not a DICOM folder")
               for p in problems)
    assert not any("P3" in p for p in problems), problems
