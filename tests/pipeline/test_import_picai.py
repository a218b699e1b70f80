"""`import_picai`: a PI-CAI-layout archive of the two real ProstateX patients becomes a manifest the study accepts.

What is checked is what `run mri` will meet: `osteomet manifest check`, the study's pre-flight
checks, each patient loaded as the preprocessing loads it, and the archive and the labels left
byte for byte as they were (nothing written inside them, no DICOM identifier in any output).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from osteomet.cli.main import app
from osteomet.data.case import load_mri_case
from osteomet.data.geometry import Geometry
from osteomet.data.images import read_image
from osteomet.data.manifest import read_manifest
from osteomet.data.picai import read_marksheet
from osteomet.data.study_checks import check_study_images, check_study_labels
from osteomet.errors import InputError, OutputExistsError
from osteomet.pipeline.import_picai import import_picai
from tests.data.annotations import picai_like_labels
from tests.data.test_picai import EARLIER, IDENTIFYING_TAGS, LESIONS, REAL, build_picai_archive, write_delineation

runner = CliRunner()
POSITIVE, NEGATIVE = REAL["ProstateX-0000"], REAL["ProstateX-0001"]


@pytest.fixture(scope="module")
def archive(prostatex: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_picai_archive(prostatex, tmp_path_factory.mktemp("picai"))


def _snapshot(*folders: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()}


def _image(archive: dict[str, Path], ids: tuple[str, str, str], seq: str) -> Path:
    pid, sid, fold = ids
    return archive["root"] / fold / pid / f"{pid}_{sid}_{seq}.mha"


def _identifiers(archive: dict[str, Path]) -> set[str]:
    """The DICOM identifiers the archive's MHA headers carry (so that a test of their absence can fail)."""
    found = set()
    for ids in (POSITIVE, NEGATIVE):
        image = sitk.ReadImage(str(_image(archive, ids, "t2w")))
        found |= {image.GetMetaData(k) for k in IDENTIFYING_TAGS if image.HasMetaDataKey(k)}
    assert {"ProstateX-0000", "ProstateX-0001"} <= found and len(found) >= 6
    return found


def _quiet(_line: str) -> None:
    pass


def test_archive_becomes_a_manifest_the_study_accepts(archive, tmp_path: Path):
    before = _snapshot(archive["root"], archive["checkout"])
    out = tmp_path / "study"
    lines: list[str] = []
    summary = import_picai(archive["root"], out, labels=archive["checkout"], log=lines.append)

    raw = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
    assert raw["patient_id"].tolist() == ["10795", "11373"]
    sheet = read_marksheet(archive["marksheet"])
    for ids in (NEGATIVE, POSITIVE):
        pid, sid, _ = ids
        row, line = raw.set_index("patient_id").loc[pid], sheet.loc[f"{pid}_{sid}"]
        assert row["study_id"] == sid
        assert [row["t2"], row["dwi"], row["adc"]] == [str(_image(archive, ids, s)) for s in ("t2w", "hbv", "adc")]
        assert row["label"] == {"YES": "1", "NO": "0"}[line["case_cspca"]]
        assert (float(row["age"]), float(row["psa"]), row["centre"]) == \
            (float(line["patient_age"]), float(line["psa"]), line["center"])
        assert row["gleason"] == row["isup"] == ""  # csPCa is ISUP >= 2: as predictors they would be the label
    assert raw.set_index("patient_id").loc["11373", "mask"] == str(archive["lesions"] / "11373_1001396.nii.gz")
    assert raw.set_index("patient_id").loc["10795", "mask"] == ""  # its delineation is empty: a negative study

    counts = summary["counts"]
    assert (counts["imported"], counts["positive"], counts["negative"], counts["masks"], counts["empty_delineations"]) \
        == (2, 1, 1, 1, 1)
    assert summary == json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert {r["case_id"]: r["reason"] for r in summary["not_imported"]} == {
        "10000_1000000": "marksheet row without images", "10100_1000100": "missing hbv, adc",
        "10795_1000790": "another study of the patient was imported (1000811, 2011-12-07)",
        "12345_1234567": "images without a marksheet row"}
    assert summary["images_without_marksheet_rows"] == ["12345_1234567"]
    assert summary["marksheet_rows_without_images"] == ["10000_1000000"]
    assert summary["incomplete_studies"] == {"10100_1000100": ["hbv", "adc"]}
    assert {p["patient_id"]: p["other_studies"] for p in summary["patients"]} == {"10795": [EARLIER[1]], "11373": []}
    assert {p["patient_id"]: p["mask_labels"] for p in summary["patients"]} == {"10795": [], "11373": [2, 3]}
    assert any("gleason and isup are left empty" in w for w in summary["warnings"])
    markdown = (out / "summary.md").read_text(encoding="utf-8")
    assert "| 10795 | 1000811 | 2011-12-07 | 1000790 |" in markdown and "| 11373 | 1001396 | 1 | lesion (2, 3) |" in markdown
    assert any("imported 2 patients (1 positive, 1 negative by case_csPCa)" in line for line in lines)

    result = runner.invoke(app, ["manifest", "check", str(out / "manifest.csv")])
    assert result.exit_code == 0, result.output
    assert "ok: mri manifest with 2 patients" in " ".join(result.output.split())

    cohort = read_manifest(out / "manifest.csv")
    check_study_images(cohort, ("t2", "dwi", "adc", "mask"), source="imported")
    frame = cohort.to_frame().assign(split="train")
    check_study_labels(frame, source="imported")
    for record in cohort:  # as the preprocessing loads them: DWI/ADC onto T2, the mask on the T2 grid
        case = load_mri_case(record)
        assert case.dwi.GetSize() == case.t2.GetSize()
        if record.patient_id == "11373":
            assert Geometry.of(case.mask) == Geometry.of(case.t2)
            expected = picai_like_labels(read_image(_image(archive, POSITIVE, "t2w")), LESIONS)
            np.testing.assert_array_equal(sitk.GetArrayFromImage(case.mask_labels), expected)
        else:
            assert case.mask is None
    assert _snapshot(archive["root"], archive["checkout"]) == before


def test_own_labels_join_by_patient_and_keep_the_histopathology(archive, tmp_path: Path):
    labels = tmp_path / "bm.csv"
    labels.write_text("patient_id,bm\n11373,0\n10795,1\n99999,1\n")
    out = tmp_path / "study"
    summary = import_picai(archive["root"], out, labels=archive["lesions"], label=str(labels), log=_quiet)
    frame = read_manifest(out / "manifest.csv").to_frame().set_index("patient_id")
    assert frame["label"].to_dict() == {"10795": 1, "11373": 0}
    # the highest lesion Gleason sum and case_ISUP: 4+3 -> 7, ISUP 3; "3+3,0+0" -> 6, ISUP 1
    assert frame.loc["11373", ["gleason", "isup"]].tolist() == [7, 3]
    assert frame.loc["10795", ["gleason", "isup"]].tolist() == [6, 1]
    assert summary["clinical"]["histopathology_withheld"] is False
    assert summary["labelled_patients_without_images"] == ["99999"]
    assert not any("left empty" in w for w in summary["warnings"])

    labels.write_text("patient_id,study_id,label\n11373,,1\n10795,1000790,0\n")  # the study named is the one imported
    picked = tmp_path / "picked"
    summary = import_picai(archive["root"], picked, labels=archive["lesions"], label=str(labels), log=_quiet)
    row = read_manifest(picked / "manifest.csv").to_frame().set_index("patient_id").loc["10795"]
    assert (row["label"], row["gleason"], row["isup"]) == (0, 7, 2)  # "3+4,N/A", case_ISUP 2
    assert pd.isna(row["psa"])  # "N/A" in the marksheet
    assert pd.read_csv(picked / "manifest.csv", dtype=str).set_index("patient_id").loc["10795", "study_id"] == EARLIER[1]
    reasons = {r["case_id"]: r["reason"] for r in summary["not_imported"]}
    assert reasons["10795_1000811"] == "no label"


@pytest.mark.parametrize("label, message", [
    ("case_ISUP", r"--label case_ISUP: not a yes/no column \(2 value\(s\) are not\): marksheet line 4 "
                  r"\(study 10795_1000790\): '2' is not yes/no"),
    ("bone_met", r"--label bone_met: no such marksheet column; yes/no columns: case_cspca"),
    ("missing.csv", r"--label missing.csv: no such label file"),
])
def test_a_label_that_is_not_yes_no_is_refused_before_anything_is_written(archive, tmp_path: Path, label, message):
    out = tmp_path / "study"
    with pytest.raises(InputError, match=message):
        import_picai(archive["root"], out, labels=archive["lesions"], label=label, log=_quiet)
    assert not out.exists()


def test_outputs_inside_the_inputs_or_over_foreign_files_are_refused(archive, tmp_path: Path):
    before = _snapshot(archive["root"], archive["checkout"])
    for inside in (archive["root"] / "study", archive["root"], archive["lesions"] / "study"):
        with pytest.raises(OutputExistsError, match="osteomet never writes into its inputs"):
            import_picai(archive["root"], inside, labels=archive["lesions"], log=_quiet)
        assert not (inside / "manifest.csv").exists()
    assert _snapshot(archive["root"], archive["checkout"]) == before

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("my notes")
    with pytest.raises(OutputExistsError, match="not empty and holds no earlier `osteomet import picai` output"):
        import_picai(archive["root"], foreign, labels=archive["lesions"], log=_quiet)
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]

    out = tmp_path / "study"
    import_picai(archive["root"], out, labels=archive["lesions"], log=_quiet)
    first = (out / "manifest.csv").read_text(encoding="utf-8")
    import_picai(archive["root"], out, labels=archive["lesions"], log=_quiet)  # a rerun replaces its own files
    assert (out / "manifest.csv").read_text(encoding="utf-8") == first
    (out / "cohort.csv").write_text("patient_id\n")
    with pytest.raises(OutputExistsError, match=r"holds 1 file\(s\) an earlier import did not write \(cohort.csv\)"):
        import_picai(archive["root"], out, labels=archive["lesions"], log=_quiet)
    assert (out / "cohort.csv").read_text(encoding="utf-8") == "patient_id\n"


def test_conversion_writes_clean_copies_under_out_and_a_rerun_removes_them(archive, tmp_path: Path):
    identifiers = _identifiers(archive)
    before = _snapshot(archive["root"], archive["checkout"])
    out = tmp_path / "study"
    summary = import_picai(archive["root"], out, labels=archive["checkout"], convert="nifti", log=_quiet)
    raw = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False).set_index("patient_id")
    assert raw.loc["11373", "t2"] == "images/11373_t2.nii.gz" and raw.loc["11373", "mask"] == "labels/11373.nii.gz"
    cohort = read_manifest(out / "manifest.csv")
    for record in cohort:
        ids = POSITIVE if record.patient_id == "11373" else NEGATIVE
        for column, seq in (("t2", "t2w"), ("dwi", "hbv"), ("adc", "adc")):
            copy, source = read_image(getattr(record, column)), read_image(_image(archive, ids, seq))
            assert Geometry.of(copy).displacement_mm(Geometry.of(source)) < 1e-4  # NIfTI stores float32
            np.testing.assert_array_equal(sitk.GetArrayViewFromImage(copy), sitk.GetArrayViewFromImage(source))
    mask = sitk.ReadImage(str(out / "labels" / "11373.nii.gz"))
    assert Geometry.of(mask).displacement_mm(Geometry.of(read_image(out / "images" / "11373_t2.nii.gz"))) < 1e-4
    assert sorted(np.unique(sitk.GetArrayViewFromImage(mask)).tolist()) == [0, 2, 3]
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == summary["files"] == sorted(
        ["manifest.csv", "summary.md", "summary.json", "labels/11373.nii.gz"]
        + [f"images/{pid}_{c}.nii.gz" for pid in ("10795", "11373") for c in ("t2", "dwi", "adc")])
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            text = (gzip.decompress(data) if path.name.endswith(".gz") else data).decode("latin-1")
            assert not [i for i in identifiers if i in text], path
    assert _snapshot(archive["root"], archive["checkout"]) == before

    import_picai(archive["root"], out, labels=archive["checkout"], log=_quiet)  # back to the archive's files
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["manifest.csv", "summary.json", "summary.md"]
    assert read_manifest(out / "manifest.csv").get("11373").t2 == _image(archive, POSITIVE, "t2w")


def test_mha_copies_carry_no_dicom_tags(archive, tmp_path: Path):
    identifiers = _identifiers(archive)
    out = tmp_path / "study"
    import_picai(archive["root"], out, convert="mha", marksheet=archive["marksheet"], log=_quiet)
    copy = sitk.ReadImage(str(out / "images" / "11373_t2.mha"))
    assert not [k for k in IDENTIFYING_TAGS if copy.HasMetaDataKey(k)]
    assert not [i for i in identifiers if i.encode() in (out / "images" / "11373_t2.mha").read_bytes()]
    assert sitk.ReadImage(str(_image(archive, POSITIVE, "t2w"))).HasMetaDataKey("0010|0020")  # the source keeps them
    assert read_manifest(out / "manifest.csv").get("11373").mask is None  # no --labels: no masks, and it says so
    assert any("no delineation folder" in w for w in json.loads((out / "summary.json").read_text(encoding="utf-8"))["warnings"])


def test_an_off_grid_delineation_is_refused_naming_the_study(archive, tmp_path: Path):
    t2 = read_image(_image(archive, POSITIVE, "t2w"))
    labels = tmp_path / "original"
    write_delineation(labels / "11373_1001396.nii.gz", picai_like_labels(t2, LESIONS), t2, turn=1e-2)
    out = tmp_path / "study"
    with pytest.raises(InputError, match=r"1 delineation\(s\) cannot be used as tumour masks: 11373_1001396: .*"
                                         r"not on the grid of .*human_expert/resampled folder holds the delineations"):
        import_picai(archive["root"], out, labels=labels, marksheet=archive["marksheet"], log=_quiet)
    assert not out.exists()


def test_a_damaged_later_study_leaves_the_patient_with_the_earlier_one(archive, tmp_path: Path):
    root = tmp_path / "images"
    shutil.copytree(archive["root"], root)
    pid, sid, fold = POSITIVE
    for seq in ("t2w", "adc", "hbv"):  # a later study of 11373 whose T2 download broke off in the header
        shutil.copy(root / fold / pid / f"{pid}_{sid}_{seq}.mha", root / fold / pid / f"{pid}_1001500_{seq}.mha")
    (root / fold / pid / f"{pid}_1001500_t2w.mha").write_bytes(b"ObjectType = Image\nNDims = 3\n")
    marksheet = tmp_path / "marksheet.csv"
    marksheet.write_text(archive["marksheet"].read_text(encoding="utf-8") + "11373,1001500,2014-02-01,65,20,,50,,2,,,0,NO,RUMC\n")
    summary = import_picai(root, tmp_path / "study", labels=archive["lesions"], marksheet=marksheet, log=_quiet)
    reasons = {r["case_id"]: r["reason"] for r in summary["not_imported"]}
    assert reasons["11373_1001500"].startswith(f"unreadable t2w: {root / fold / pid / '11373_1001500_t2w.mha'}")
    assert read_manifest(tmp_path / "study" / "manifest.csv").get("11373").t2 == root / fold / pid / f"{pid}_{sid}_t2w.mha"


def test_the_cli_imports_the_archive_and_refuses_an_output_inside_it(archive, tmp_path):
    out = tmp_path / "cli_study"
    result = runner.invoke(app, ["import", "picai", str(archive["root"]), "-o", str(out), "--labels",
                                 str(archive["lesions"])])
    assert result.exit_code == 0, result.output
    assert set(pd.read_csv(out / "manifest.csv", dtype={"patient_id": str})["patient_id"]) == {"11373", "10795"}
    inside = runner.invoke(app, ["import", "picai", str(archive["root"]), "-o", str(archive["root"] / "study")])
    assert inside.exit_code == 2 and "Traceback" not in inside.output, inside.output
    assert not (archive["root"] / "study").exists()
