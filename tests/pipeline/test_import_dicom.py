"""``osteomet import dicom`` on PACS-like trees of real DICOM: what is chosen, reported, written and refused."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from pydicom.uid import generate_uid
from typer.testing import CliRunner

from osteomet.cli.main import app
from osteomet.data.manifest import read_manifest
from osteomet.errors import InputError, OutputExistsError
from osteomet.pipeline.import_dicom import ImportSummary, import_dicom
from tests.conftest import shared_path
from tests.data.test_dicom_tree import Export, copy_series, pacs_export

pytestmark = pytest.mark.shared_data
runner = CliRunner()


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Export:
    return pacs_export(tmp_path_factory.mktemp("pacs_import"))


@pytest.fixture(scope="module")
def imported(export: Export, tmp_path_factory: pytest.TempPathFactory) -> ImportSummary:
    return import_dicom(export.root, tmp_path_factory.mktemp("imports") / "study", jobs=1, log=lambda _: None)


def series_table(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "series.csv", dtype=str, keep_default_na=False)


def patient_of(out: Path, uid: str) -> str:
    table = series_table(out)
    (pid,) = set(table.loc[table["series_uid"] == uid, "patient_id"])
    return pid


def test_chosen_series_in_the_manifest(export: Export, imported: ImportSummary) -> None:
    out = imported.out
    manifest = pd.read_csv(out / "manifest.csv", dtype=str)
    p0, p1 = patient_of(out, export.uids["0000/t2"]), patient_of(out, export.uids["0001/S1/t2"])
    assert manifest["patient_id"].tolist() == [p1], "the patient with two equal ADC candidates is left out"
    row = manifest.iloc[0]
    for role in ("t2", "dwi", "adc"):  # the later, Philips-style study
        assert row[f"{role}_series_uid"] == export.uids[f"0001/S2/{role}"]
        assert Path(row[role]).is_dir()
    assert imported.mri_complete == [p1] and imported.left_out == [p0]
    assert imported.study_choices[p1] == ["bpMRI: S2 chosen, the latest of 2 complete studies (S1, S2)"]


def test_ct_without_uids_chosen_by_kernel_and_converted(export: Export, imported: ImportSummary) -> None:
    out = imported.out
    ct = pd.read_csv(out / "ct_manifest.csv", dtype=str, keep_default_na=False)
    (pid,) = ct["patient_id"]
    assert ct.iloc[0]["ct"] == f"images/{pid}_ct.nii.gz"  # its folder holds a second series without UID
    (conversion,) = imported.converted
    assert conversion["reason"] == "no SeriesInstanceUID, and its folder holds other files"
    image = sitk.ReadImage(str(out / ct.iloc[0]["ct"]))
    assert image.GetSize() == (512, 512, 20)
    table = series_table(out)
    chosen = table[(table["modality"] == "CT") & (table["status"] == "chosen")]
    assert chosen["kernel"].tolist() == ["Br38f"]
    assert "kernel Br64f (avoided)" in table.loc[table["kernel"] == "Br64f", "decision"].item()


def test_series_table_says_why(export: Export, imported: ImportSummary) -> None:
    table = series_table(imported.out).set_index("series_uid", drop=False)
    expect = {"0000/t2": ("t2", "t2-axial", "chosen"), "0000/dwi": ("dwi", "dwi-high-b", "chosen"),
              "0000/adc": ("adc", "adc-image-type", "ambiguous"),
              "0000/adc_second": ("adc", "adc-image-type", "ambiguous"),
              "0000/t2_sagittal": ("other", "t2-sagittal-or-coronal", "not used"),
              "0000/localiser": ("localiser", "localiser-image-type", "not used"),
              "0000/dwi_b50_ge": ("other", "dwi-low-b", "not used"),
              "0001/S1/t2": ("t2", "t2-axial", "other study"), "0001/S2/dwi": ("dwi", "dwi-high-b", "chosen")}
    for name, (role, rule, status) in expect.items():
        row = table.loc[export.uids[name]]
        assert (row["role"], row["rule"], row["status"]) == (role, rule, status), name
    assert table.loc[export.uids["0000/dwi_b50_ge"], "b_values"] == "50"
    assert "GE" in table.loc[export.uids["0000/dwi_b50_ge"], "b_source"]
    assert table.loc[export.uids["0001/S2/dwi"], "decision"] == "dwi: rule dwi-high-b (score 3), highest b 1400"
    assert "truncated" in table.loc[export.uids["0000/t2_sagittal"], "problems"]
    assert set(table["study"]) == {"S1", "S2"}
    unreadable = pd.read_csv(imported.out / "unreadable.csv")
    assert sorted(unreadable["file"]) == sorted(str(p) for p in export.truncated.values())


def test_ambiguity_listed_with_the_candidates(export: Export, imported: ImportSummary) -> None:
    p0 = patient_of(imported.out, export.uids["0000/t2"])
    report = json.loads((imported.out / "summary.json").read_text(encoding="utf-8"))
    listed = report["ambiguous"][p0]["adc"]
    assert {c["series_uid"] for c in listed} == {export.uids["0000/adc"], export.uids["0000/adc_second"]}
    assert {c["description"] for c in listed} == {"ep2d_diff_tra_DYNDIST_ADC", "ep2d_diff_b50_800_1400_tra_ADC"}
    text = (imported.out / "summary.md").read_text(encoding="utf-8")
    assert "## Ambiguous" in text and export.uids["0000/adc"] in text and export.uids["0000/adc_second"] in text
    assert '"SeriesInstanceUID"' in text  # the mapping that settles it


def test_no_dicom_identifier_in_any_output(export: Export, imported: ImportSummary) -> None:
    assert export.identifiers >= {"ProstateX-0000", "ProstateX-0001", "20110707", "20110708", "20120301"}
    files = [p for p in imported.out.rglob("*") if p.is_file()]
    assert any(p.suffix == ".gz" for p in files)
    for path in files:
        data = path.read_bytes()
        if path.name.endswith(".gz"):
            import gzip

            data = gzip.decompress(data)
        for identifier in export.identifiers:
            assert identifier.encode() not in data, f"{identifier} written in {path.name}"


def test_manifests_pass_the_checks_run_mri_makes(imported: ImportSummary) -> None:
    from osteomet.data.study_checks import check_study_images

    for name, kind in (("manifest.csv", "mri"), ("ct_manifest.csv", "ct")):
        result = runner.invoke(app, ["manifest", "check", str(imported.out / name)])
        assert result.exit_code == 0, result.output
        assert f"ok: {kind} manifest" in result.output
        manifest = read_manifest(imported.out / name, kind=kind)
        columns = ("t2", "dwi", "adc") if kind == "mri" else ("ct",)
        check_study_images(manifest, columns, source=name)  # raises when a header is not a usable volume


def test_mapping_settles_the_ambiguity(export: Export, tmp_path: Path) -> None:
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps({"mappings": {"adc": {"SeriesInstanceUID": [export.uids["0000/adc"]]}}}))
    summary = import_dicom(export.root, tmp_path / "study", mapping=mapping, jobs=1, log=lambda _: None)
    assert not summary.ambiguous
    manifest = pd.read_csv(tmp_path / "study" / "manifest.csv", dtype=str)
    assert export.uids["0000/adc"] in manifest["adc_series_uid"].tolist()
    table = series_table(tmp_path / "study").set_index("series_uid")
    assert table.loc[export.uids["0000/adc"], "rule"] == "mapping:adc"
    assert table.loc[export.uids["0000/adc_second"], "status"] == "not chosen"


def test_out_inside_the_export_refused(export: Export) -> None:
    before = sorted(str(p) for p in export.root.rglob("*"))
    result = runner.invoke(app, ["import", "dicom", str(export.root), "-o", str(export.root / "export" / "study")])
    assert result.exit_code == 2
    assert "never writes into its inputs" in result.output
    assert sorted(str(p) for p in export.root.rglob("*")) == before


def test_foreign_or_edited_output_refused(export: Export, tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("my notes")
    with pytest.raises(OutputExistsError, match="not written by `osteomet import dicom`"):
        import_dicom(export.root, foreign, jobs=1, log=lambda _: None)
    out = tmp_path / "study"
    import_dicom(export.root, out, jobs=1, log=lambda _: None)
    first = (out / "manifest.csv").read_text(encoding="utf-8")
    import_dicom(export.root, out, jobs=1, log=lambda _: None)  # a rerun replaces its own files
    assert (out / "manifest.csv").read_text(encoding="utf-8").splitlines()[0] == first.splitlines()[0]
    (out / "manifest.csv").write_text(first + "# my edit\n")
    with pytest.raises(OutputExistsError, match="changed since"):
        import_dicom(export.root, out, jobs=1, log=lambda _: None)
    assert (out / "manifest.csv").read_text(encoding="utf-8").endswith("# my edit\n")


def test_pseudonym_map_and_clinical_join(export: Export, tmp_path: Path) -> None:
    pseudonyms = tmp_path / "ids.csv"
    pseudonyms.write_text("dicom_patient_id,patient_id\nProstateX-0000,alpha\nProstateX-0001,beta\n")
    clinical = tmp_path / "clinical.csv"
    clinical.write_text("dicom_patient_id;age;psa;label\nProstateX-0001;64;12,5;yes\nProstateX-9999;70;3;no\n")
    summary = import_dicom(export.root, tmp_path / "study", pseudonyms=pseudonyms, clinical=clinical, jobs=1,
                           log=lambda _: None)
    manifest = pd.read_csv(tmp_path / "study" / "manifest.csv", dtype=str)
    assert manifest[["patient_id", "age", "psa", "label"]].values.tolist() == [["beta", "64", "12.5", "yes"]]
    (record,) = read_manifest(tmp_path / "study" / "manifest.csv").records  # the decimal comma read as the
    assert (record.psa, record.label) == (12.5, 1)  # manifest reader reads it, the rest as written
    assert summary.not_in_pseudonym_map == 1  # the CT has no PatientID: it is in no map
    assert not (tmp_path / "study" / "ct_manifest.csv").exists()
    assert summary.clinical["rows_without_imported_patient"] == 1
    assert set(series_table(tmp_path / "study")["patient_id"]) == {"alpha", "beta", ""}
    for path in (tmp_path / "study").rglob("*.*"):
        assert b"ProstateX" not in path.read_bytes(), path.name


def test_keep_patient_id_when_asked(export: Export, tmp_path: Path) -> None:
    import_dicom(export.root, tmp_path / "study", keep_patient_id=True, jobs=1, log=lambda _: None)
    manifest = pd.read_csv(tmp_path / "study" / "manifest.csv", dtype=str)
    assert manifest["patient_id"].tolist() == ["ProstateX-0001"]


def test_bad_inputs_named(export: Export, tmp_path: Path) -> None:
    both = tmp_path / "both.csv"
    both.write_text("patient_id,dicom_patient_id,label\nP1,X,1\n")
    with pytest.raises(InputError, match="one id column"):
        import_dicom(export.root, tmp_path / "a", clinical=both, log=lambda _: None)
    bad = tmp_path / "bad.csv"
    bad.write_text("patient_id,gleason,isup\nP0001,7,5\nP0002,12,\n")
    with pytest.raises(InputError, match=r"line 2: row: Gleason 7 is inconsistent.*line 3: gleason: .*'12'") as error:
        import_dicom(export.root, tmp_path / "b", clinical=bad, log=lambda _: None)
    assert str(bad) in str(error.value)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # refused before writing anything
    with pytest.raises(InputError, match="--convert 'dicom'"):
        import_dicom(export.root, tmp_path / "c", convert="dicom", log=lambda _: None)


def test_convert_writes_volumes_equal_to_the_series(export: Export, imported: ImportSummary, tmp_path: Path) -> None:
    from osteomet.data.images import read_image

    out = tmp_path / "study"
    result = runner.invoke(app, ["import", "dicom", str(export.root), "-o", str(out), "--convert", "mha",
                                 "--jobs", "1"])
    assert result.exit_code == 0, result.output
    converted = pd.read_csv(out / "manifest.csv", dtype=str)
    assert not any(c.endswith("_series_uid") for c in converted.columns)
    original = read_manifest(imported.out / "manifest.csv").records[0]
    record = read_manifest(out / "manifest.csv").records[0]
    for role in ("t2", "dwi", "adc"):
        assert getattr(record, role).name == f"{record.patient_id}_{role}.mha"
        volume = read_image(getattr(record, role))
        dicom = read_image(getattr(original, role), series_uid=original.series_uid(role))
        assert volume.GetSize() == dicom.GetSize() and np.allclose(volume.GetOrigin(), dicom.GetOrigin())
        assert np.array_equal(sitk.GetArrayFromImage(volume), sitk.GetArrayFromImage(dicom))
        assert not any(k.startswith("00") for k in volume.GetMetaDataKeys())  # no DICOM attribute carried
    assert not list(out.glob(".staging-*"))


def test_import_commands_listed() -> None:
    result = runner.invoke(app, ["import", "--help"])
    assert result.exit_code == 0
    assert "dicom" in result.output and "picai" in result.output


def test_strict_fails_after_writing(export: Export, tmp_path: Path) -> None:
    result = runner.invoke(app, ["import", "dicom", str(export.root), "-o", str(tmp_path / "study"), "--strict",
                                 "--jobs", "1"])
    assert result.exit_code == 2
    assert "not settled" in result.output
    assert (tmp_path / "study" / "summary.md").is_file() and (tmp_path / "study" / "manifest.csv").is_file()


def test_twelve_patients_ready_for_run_mri(tmp_path: Path) -> None:
    """An export of 12 patients (the two real ones copied under new ids and UIDs) with labels, a split and two
    tumour masks: the manifest import writes passes `run mri`'s split stage (labels, split, image headers) as it is,
    and its DICOM references preprocess."""
    from osteomet.data.images import read_image, write_image
    from osteomet.data.manifest import write_manifest
    from osteomet.pipeline.preprocess import preprocess_mri
    from osteomet.pipeline.run_mri import study_manifest
    from osteomet.pipeline.study import load_study_config

    root, masks = tmp_path / "export", tmp_path / "clinical" / "masks"
    masks.mkdir(parents=True)
    rows = ["dicom_patient_id,label,split,age,psa,mask"]
    splits = ["train"] * 3 + ["val"] + ["test"] * 2
    for i in range(12):
        source, dicom_id = ("ProstateX-0000", "ProstateX-0001")[i % 2], f"HOSP{1000 + i}"
        study = (generate_uid(), f"2020010{1 + i % 9}")
        folder = root / f"{i:02d}"
        for kind in ("t2w", "adc", "hbv"):
            copy_series(sorted(shared_path("mri", "prostatex", source, kind).glob("*.dcm")),
                        folder / generate_uid()[-12:], series_uid=generate_uid(), study=study, patient=dicom_id)
        mask = ""
        if i < 2:
            t2 = read_image(shared_path("mri", "prostatex", source, "t2w"))
            array = np.zeros(sitk.GetArrayViewFromImage(t2).shape, np.uint8)
            array[8:12, 180:200, 180:200] = 1
            image = sitk.GetImageFromArray(array)
            image.CopyInformation(t2)
            write_image(image, masks / f"{dicom_id}.nii.gz")
            mask = f"masks/{dicom_id}.nii.gz"
        rows.append(f"{dicom_id},{i % 2},{splits[i // 2]},{60 + i},{4 + i},{mask}")
    clinical = tmp_path / "clinical" / "clinical.csv"
    clinical.write_text("\n".join(rows) + "\n")

    study = tmp_path / "study"
    summary = import_dicom(root, study, clinical=clinical, jobs=2, log=lambda _: None)
    assert len(summary.mri_complete) == 12 and not summary.unsettled
    manifest = read_manifest(study / "manifest.csv", kind="mri")
    assert all(r.label in (0, 1) and r.split and r.t2_series_uid for r in manifest)
    assert sum(r.mask is not None for r in manifest) == 2

    outcome = study_manifest(study / "manifest.csv", tmp_path / "run" / "split", load_study_config("tiny"))
    assert outcome.record["summary"] == {"train": 6, "val": 2, "test": 4}
    split = pd.read_csv(tmp_path / "run" / "split" / "manifest.csv", dtype=str)
    with_masks = split[split["mask"].notna()]
    subset = tmp_path / "two.csv"
    write_manifest(with_masks, subset, kind="mri")
    _, index = preprocess_mri(subset, tmp_path / "run" / "preprocess", seg_config="tiny", jobs=1)
    assert index["status"].tolist() == ["processed", "processed"]
    assert index["has_mask"].astype(str).tolist() == ["True", "True"]
    assert os.listdir(tmp_path / "run" / "preprocess" / "cases")
