"""Scanning DICOM trees: real ProstateX and CT headers, nested and renamed the way PACS exports come.

:func:`pacs_export` builds the export the import tests use too: the real files copied into
UID-named folders and files without extension, plus distractor series made from real files with
their tags edited the way other vendors write them (a sagittal T2, a localiser, a GE low-b DWI,
a second ADC, a later Philips-style study, a sharp-kernel CT beside the real one), truncated
files and files that are not DICOM.
"""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pydicom
import pytest
from pydicom.uid import generate_uid

from osteomet.data import dicom_tree
from osteomet.data.dicom_tree import read_headers, scan_tree
from osteomet.data.series_rules import load_rules
from tests.conftest import shared_path

pytestmark = pytest.mark.shared_data

Edit = Callable[[pydicom.Dataset, int], None]


@dataclass
class Export:
    """A built export: its root, the series UID of each named series, and what must never be written."""

    root: Path
    uids: dict[str, str] = field(default_factory=dict)
    #: PatientName/PatientID values and study dates of the export: no output may contain them.
    identifiers: set[str] = field(default_factory=set)
    junk: int = 0
    truncated: dict[str, Path] = field(default_factory=dict)


def _folder(parent: Path) -> Path:
    folder = parent / uuid.uuid4().hex[:10]
    folder.mkdir(parents=True)
    return folder


def copy_series(files: list[Path], folder: Path, *, series_uid: str | None = None, study: tuple[str, str] | None = None,
                patient: str | None = None, names: Callable[[pydicom.Dataset, int], str] | None = None,
                edit: Edit | None = None) -> str:
    """Copy real DICOM files into ``folder`` with a new SOP UID each (and the given series/study/patient).

    Returns the series UID the copies carry. ``names`` gives each file's name (default: its SOP
    Instance UID, no extension, as dcm4che exports write them).
    """
    folder.mkdir(parents=True, exist_ok=True)
    uid = None
    for i, source in enumerate(sorted(files)):
        ds = pydicom.dcmread(source)
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        if series_uid is not None:
            ds.SeriesInstanceUID = series_uid
        if study is not None:
            ds.StudyInstanceUID, date = study
            for name in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate", "InstanceCreationDate",
                         "PerformedProcedureStepStartDate"):
                if name in ds:
                    setattr(ds, name, date)
        if patient is not None:
            ds.PatientID = ds.PatientName = patient
        if edit is not None:
            edit(ds, i)
        uid = ds.SeriesInstanceUID
        ds.save_as(folder / (names(ds, i) if names else ds.SOPInstanceUID), enforce_file_format=True)
    return str(uid)


def siemens_to_ge(b_value: int) -> Edit:
    """Replace the Siemens b-value element by GE's (0043,1039), with GE's 10^9 offset."""

    def edit(ds: pydicom.Dataset, _: int) -> None:
        for tag in [t for t in ds.keys() if t.group == 0x0019]:
            del ds[tag]
        ds.Manufacturer = "GE MEDICAL SYSTEMS"
        ds.add_new((0x0043, 0x0010), "LO", "GEMS_PARM_01")
        ds.add_new((0x0043, 0x1039), "IS", [1_000_000_000 + b_value, 8, 0, 0])

    return edit


def siemens_to_philips(b_value: float) -> Edit:
    """Replace the Siemens b-value element by Philips' (2001,1003) float."""

    def edit(ds: pydicom.Dataset, _: int) -> None:
        for tag in [t for t in ds.keys() if t.group == 0x0019]:
            del ds[tag]
        ds.Manufacturer = "Philips Medical Systems"
        ds.add_new((0x2001, 0x0010), "LO", "Philips Imaging DD 001")
        ds.add_new((0x2001, 0x1003), "FL", b_value)

    return edit


def described(text: str, then: Edit | None = None) -> Edit:
    def edit(ds: pydicom.Dataset, i: int) -> None:
        ds.SeriesDescription = text
        if then:
            then(ds, i)

    return edit


def truncate(path: Path, keep: int) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[:keep])
    return path


def pacs_export(root: Path) -> Export:
    """Two real bpMRI patients and the real CT, with distractors, nested as a PACS export."""
    prostatex, ct = shared_path("mri", "prostatex"), shared_path("ct", "totalseg_dicom", "ct")
    export = Export(root=root)
    base = root / "export"

    def real(patient: str, kind: str) -> list[Path]:
        return sorted((prostatex / patient / kind).glob("*.dcm"))

    for patient in ("ProstateX-0000", "ProstateX-0001"):
        first = pydicom.dcmread(real(patient, "t2w")[0], stop_before_pixels=True)
        export.identifiers |= {str(first.PatientID), str(first.PatientName), str(first.StudyDate)}

    # ProstateX-0000: one study, every series in its own UID-named folder, distractors beside them
    study0 = _folder(base)
    for kind, name in (("t2w", "t2"), ("adc", "adc"), ("hbv", "dwi")):
        export.uids[f"0000/{name}"] = copy_series(real("ProstateX-0000", kind), _folder(study0))

    def sagittal(ds: pydicom.Dataset, i: int) -> None:
        ds.SeriesDescription = "t2_tse_sag"
        ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
        ds.ImagePositionPatient = [-27 + 3 * i, -100, 60]

    export.uids["0000/t2_sagittal"] = copy_series(real("ProstateX-0000", "t2w"), _folder(study0),
                                                  series_uid=generate_uid(), edit=sagittal)

    def localiser(ds: pydicom.Dataset, _: int) -> None:
        ds.SeriesDescription = "T2 HASTE tra"  # a T2-like description: only ImageType says localiser
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]

    export.uids["0000/localiser"] = copy_series(real("ProstateX-0000", "t2w")[:3], _folder(study0),
                                                series_uid=generate_uid(), edit=localiser)
    export.uids["0000/dwi_b50_ge"] = copy_series(real("ProstateX-0000", "hbv"), _folder(study0),
                                                 series_uid=generate_uid(),
                                                 edit=described("Ax DWI", siemens_to_ge(50)))
    export.uids["0000/adc_second"] = copy_series(real("ProstateX-0000", "adc"), _folder(study0),
                                                 series_uid=generate_uid(),
                                                 edit=described("ep2d_diff_b50_800_1400_tra_ADC"))
    sagittal_folder = next(p.parent for p in study0.rglob("*")
                           if p.is_file() and pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID
                           == export.uids["0000/t2_sagittal"])
    export.truncated["pixels"] = truncate(sorted(sagittal_folder.iterdir())[-1], 5000)

    # ProstateX-0001: the original study flat in one folder (series mixed, files IM00001...), and a later
    # study written the way Philips names its series
    flat = _folder(base)
    counter = iter(range(1, 1000))
    for kind, name in (("t2w", "t2"), ("adc", "adc"), ("hbv", "dwi")):
        export.uids[f"0001/S1/{name}"] = copy_series(real("ProstateX-0001", kind), flat,
                                                     names=lambda ds, i: f"IM{next(counter):05d}")
    later = (generate_uid(), "20120301")
    export.identifiers.add(later[1])
    study1 = _folder(base)
    for kind, name, edit in (("t2w", "t2", described("T2W_TSE_ax", lambda ds, i: setattr(ds, "Manufacturer",
                                                                                          "Philips Medical Systems"))),
                             ("adc", "adc", described("dADC", siemens_to_philips(0.0))),
                             ("hbv", "dwi", described("dDWI", siemens_to_philips(1400.0)))):
        export.uids[f"0001/S2/{name}"] = copy_series(real("ProstateX-0001", kind), _folder(study1),
                                                     series_uid=generate_uid(), study=later,
                                                     names=lambda ds, i: f"IM_{i + 1:04d}.dcm", edit=edit)

    # the real CT (no PatientID, no UIDs at all) and a sharp-kernel copy of it in the same folder
    ct_folder = base / "ct_anon" / "series"
    ct_folder.mkdir(parents=True)
    for file in sorted(ct.iterdir()):
        shutil.copy(file, ct_folder / file.name)
    first_ct = pydicom.dcmread(sorted(ct.iterdir())[0], stop_before_pixels=True)
    export.identifiers.add(str(first_ct.StudyDate))

    def sharp(ds: pydicom.Dataset, _: int) -> None:
        ds.ConvolutionKernel = ["Br64f", "3"]
        ds.SeriesDescription = "CT Bone 3.0"
        ds.SOPInstanceUID = ""  # as anonymised as the real series

    copy_series(sorted(ct.iterdir()), ct_folder, names=lambda ds, i: f"bone_{i:03d}", edit=sharp)

    # what is not DICOM, and a copy cut inside its header
    (base / "README.txt").write_text("export of 2024\n")
    (study0 / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(64))
    (flat / "thumbs.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(100))
    export.junk = 3
    broken = base / "broken"
    broken.mkdir()
    export.truncated["header"] = truncate(shutil.copy(real("ProstateX-0000", "t2w")[0], broken / "1.2.999"), 600)
    return export


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Export:
    return pacs_export(tmp_path_factory.mktemp("pacs"))


@pytest.fixture(scope="module")
def scan(export: Export) -> dicom_tree.ScanResult:
    return scan_tree(export.root, settings=load_rules().scan_settings(), jobs=1)


def by_uid(scan: dicom_tree.ScanResult) -> dict[str, dicom_tree.SeriesInfo]:
    return {s.series_uid: s for s in scan.series if s.series_uid}


def test_every_series_found_with_its_files(export: Export, scan: dicom_tree.ScanResult) -> None:
    found = by_uid(scan)
    assert set(export.uids.values()) <= set(found)
    assert len(found[export.uids["0000/t2"]].files) == 19
    assert len(found[export.uids["0000/localiser"]].files) == 3
    # the flat folder holds three series; each series is grouped by its UID, not by its folder
    flat = {found[export.uids[f"0001/S1/{k}"]].folders[0] for k in ("t2", "adc", "dwi")}
    assert len(flat) == 1
    assert {len(found[export.uids[f"0001/S1/{k}"]].files) for k in ("t2", "adc", "dwi")} == {19}
    # files without a .dcm suffix and with one are read alike
    assert all(p.suffix == ".dcm" for p in found[export.uids["0001/S2/t2"]].files)
    assert not any(p.name.endswith(".dcm") for p in found[export.uids["0000/adc"]].files)


def test_studies_and_patients(export: Export, scan: dicom_tree.ScanResult) -> None:
    found = by_uid(scan)
    s1, s2 = found[export.uids["0001/S1/t2"]], found[export.uids["0001/S2/t2"]]
    assert s1.patient_key == s2.patient_key == "id:ProstateX-0001"
    assert s1.study_key != s2.study_key
    assert (s1.study_date, s2.study_date) == ("20110708", "20120301")


def test_files_without_uids_grouped_by_folder_and_geometry(export: Export, scan: dicom_tree.ScanResult) -> None:
    ct = [s for s in scan.series if s.modality == "CT"]
    assert len(ct) == 2, "the soft and the sharp reconstruction share a folder and geometry but not their description"
    assert {s.kernel for s in ct} == {"Br38f", "Br64f"}
    for s in ct:
        assert s.series_uid == "" and s.dicom_patient_id == ""
        assert s.grouping == "folder + geometry (no SeriesInstanceUID)"
        assert len(s.files) == 20 and s.n_positions == 20 and s.volumes == 1
        assert any("no SeriesInstanceUID" in p for p in s.problems)
        assert any("no PatientID" in p for p in s.problems)
    assert ct[0].patient_key == ct[1].patient_key  # one patient: their folder
    assert ct[0].patient_key.startswith("folder:")


def test_vendor_b_value_conventions(export: Export, scan: dicom_tree.ScanResult) -> None:
    found = by_uid(scan)
    assert found[export.uids["0000/dwi"]].b_values == (1000.0,)  # Siemens (0019,100C), text
    assert "Siemens" in found[export.uids["0000/dwi"]].b_source
    assert found[export.uids["0000/dwi_b50_ge"]].b_values == (50.0,)  # GE (0043,1039) minus its 10^9 offset
    assert "GE" in found[export.uids["0000/dwi_b50_ge"]].b_source
    assert found[export.uids["0001/S2/dwi"]].b_values == (1400.0,)  # Philips (2001,1003) float
    assert "Philips" in found[export.uids["0001/S2/dwi"]].b_source
    assert found[export.uids["0000/t2"]].b_values == ()


def test_orientation_and_image_type(export: Export, scan: dicom_tree.ScanResult) -> None:
    found = by_uid(scan)
    assert found[export.uids["0000/t2"]].orientation == "axial"  # tilted 18 degrees: still axial
    assert found[export.uids["0000/t2_sagittal"]].orientation == "sagittal"
    assert "LOCALIZER" in found[export.uids["0000/localiser"]].image_type
    assert "ADC" in found[export.uids["0000/adc"]].image_type


def test_unreadable_files_recorded_not_fatal(export: Export, scan: dicom_tree.ScanResult) -> None:
    reasons = dict(scan.unreadable)
    assert set(reasons) == {str(export.truncated["header"]), str(export.truncated["pixels"])}
    assert "header ends before" in reasons[str(export.truncated["header"])]
    assert "pixel data ends" in reasons[str(export.truncated["pixels"])]
    sagittal = by_uid(scan)[export.uids["0000/t2_sagittal"]]
    assert sagittal.blocking and "truncated" in sagittal.blocking[0]
    assert scan.n_skipped == export.junk
    assert scan.n_dicom + scan.n_skipped + 1 == scan.n_files  # the header-truncated file is neither


def test_parallel_scan_matches_serial(export: Export, scan: dicom_tree.ScanResult,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dicom_tree, "SERIAL_BELOW", 0)
    chunks = []
    parallel = scan_tree(export.root, settings=load_rules().scan_settings(), jobs=2, progress=chunks.append)
    assert parallel.jobs == 2 and sum(chunks) == scan.n_files and len(chunks) > 1

    def summary(result: dicom_tree.ScanResult) -> list[tuple]:
        return [(s.key, tuple(s.files), s.b_values, s.orientation) for s in result.series]

    assert summary(parallel) == summary(scan)
    assert parallel.unreadable == scan.unreadable and parallel.n_skipped == scan.n_skipped


def test_truncation_inside_pixel_data_detected_from_the_header(tmp_path: Path) -> None:
    source = sorted(shared_path("mri", "prostatex", "ProstateX-0000", "adc").glob("*.dcm"))[0]
    whole = shutil.copy(source, tmp_path / "whole")
    cut = truncate(Path(shutil.copy(source, tmp_path / "cut")), source.stat().st_size - 100)
    headers, skipped, unreadable = read_headers([str(whole), str(cut)], load_rules().scan_settings())
    assert [h.problem for h in headers] == [None, "truncated: pixel data ends 100 bytes short of its declared "
                                                  "21504 bytes"]
    assert skipped == 0 and unreadable == []


def test_private_numbers_read_as_text_or_binary() -> None:
    import struct

    assert dicom_tree._number_from_element(b"1000") == 1000.0
    assert dicom_tree._number_from_element(b"800 ") == 800.0
    assert dicom_tree._number_from_element(b"1000000800\\8\\0\\0") == 1000000800.0
    assert dicom_tree._number_from_element(struct.pack("<f", 1400.0)) == 1400.0
    assert dicom_tree._number_from_element(b"\x01\x02\x03") is None


def test_plane_from_orientation() -> None:
    assert dicom_tree.plane([1, 0, 0, 0, 1, 0])[0] == "axial"
    assert dicom_tree.plane([0, 1, 0, 0, 0, -1])[0] == "sagittal"
    assert dicom_tree.plane([1, 0, 0, 0, 0, -1])[0] == "coronal"
    assert dicom_tree.plane(None)[0] == "unknown"


def test_series_with_a_gap_reports_it(tmp_path: Path) -> None:
    files = sorted(shared_path("mri", "prostatex", "ProstateX-0000", "t2w").glob("*.dcm"))
    copy_series(files[:8] + files[9:], tmp_path / "gap", series_uid=generate_uid())
    (series,) = scan_tree(tmp_path, settings=load_rules().scan_settings(), jobs=1).series
    assert series.n_positions == 18
    assert any("slice spacing is not uniform" in p and "1 slice(s) missing" in p for p in series.problems)
    assert series.layout()[2]  # the check a candidate goes through names the gap too


def test_not_a_folder(tmp_path: Path) -> None:
    from osteomet.errors import InputError

    with pytest.raises(InputError, match="not a folder"):
        scan_tree(tmp_path / "missing")
