"""The PI-CAI archive read as shipped: studies in fold folders, the marksheet's quirks, ISUP-valued delineations.

The archive is built from the two real ProstateX patients that PI-CAI ships as 11373_1001396
(ProstateX-0000, csPCa) and 10795_1000811 (ProstateX-0001, negative), written as MHA with the
DICOM tags the conversion copies into their headers, next to their real marksheet rows and
delineations written the way the real ones are (uint16, ISUP grade per lesion, header 2e-4 off).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from osteomet.data.geometry import Geometry, GeometryMismatchError
from osteomet.data.images import read_image
from osteomet.data.label_masks import MaskError
from osteomet.data.picai import (
    choose_study,
    delineation_folders,
    find_delineations,
    find_marksheet,
    find_studies,
    gleason_sums,
    highest_gleason,
    parse_yes_no,
    read_delineation,
    read_marksheet,
    read_own_labels,
)
from osteomet.errors import InputError, MissingInputError
from tests.data.annotations import LPS_TO_RAS, picai_like_labels, rotation

#: ProstateX case -> (PI-CAI patient id, study id, fold folder), from picai_labels' ProstateX mapping.
REAL = {"ProstateX-0000": ("11373", "1001396", "picai_public_images_fold0"),
        "ProstateX-0001": ("10795", "1000811", "picai_public_images_fold1")}
#: An earlier study of 10795 (its images: copies of the real ones) that must not be imported.
EARLIER = ("10795", "1000790")
#: The DICOM identifiers dcm2mha copies into MHA headers; none may reach an import's output.
IDENTIFYING_TAGS = ("0010|0010", "0010|0020", "0020|000d", "0020|000e", "0008|0050")
#: The real marksheet header and rows of the two studies (picai_labels/clinical_information/marksheet.csv),
#: a study without images, an earlier study with the quirks (N/A lesion, N/A PSA), an incomplete study.
MARKSHEET = """\
patient_id,study_id,mri_date,patient_age,psa,psad,prostate_volume,histopath_type,lesion_PIRADS,lesion_GS,lesion_ISUP,case_ISUP,case_csPCa,center
10000,1000000,2019-07-02,73,7.7,,55,MRBx,4,0+0,0,0,NO,PCNN
10100,1000100,2019-01-05,70,6.1,0.1,61,,2,,,0,NO,ZGT
10795,1000790,2010-03-15,66,N/A,,30,SysBx+MRBx,"5,2","3+4,N/A","2",2,YES,RUMC
10795,1000811,2011-12-07,67,5.1,0.18,28,MRBx,"4,4","3+3,0+0","1,0",1,NO,RUMC
11373,1001396,2012-01-04,63,13,0.25,52,MRBx,4,4+3,3,3,YES,RUMC
"""
#: Lesions of 11373's delineation: (centre as a fraction of the field of view, radius mm, ISUP grade).
LESIONS = [((0.5, 0.55, 0.5), 7.0, 3), ((0.42, 0.6, 0.55), 4.0, 2)]


def _write_mha(image: sitk.Image, path: Path, tags: dict[str, str]) -> Path:
    for key, value in tags.items():
        image.SetMetaData(key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)
    return path


def _dicom_tags(series: Path) -> dict[str, str]:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(sorted(series.glob("*.dcm"))[0]))
    reader.ReadImageInformation()
    return {k: reader.GetMetaData(k).strip() for k in IDENTIFYING_TAGS if reader.HasMetaDataKey(k)}


def write_delineation(path: Path, labels_zyx: np.ndarray, grid: sitk.Image, *, turn: float = 2e-4,
                      dtype=np.uint16) -> Path:
    """As ITK-SNAP exports reach PI-CAI: integer labels, direction a few 1e-4 off the T2, qform and sform a hair apart."""
    direction = rotation([0, 0, 1], turn) @ np.asarray(grid.GetDirection()).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = LPS_TO_RAS @ direction @ np.diag(grid.GetSpacing())
    affine[:3, 3] = LPS_TO_RAS @ np.asarray(grid.GetOrigin())
    image = nib.Nifti1Image(labels_zyx.transpose(2, 1, 0).astype(dtype), affine)
    image.set_qform(affine, code=1)
    sform = affine.copy()
    sform[:3, 3] += 1e-6
    image.set_sform(sform, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, str(path))
    return path


def _tiny(value: float) -> sitk.Image:
    image = sitk.Image([8, 8, 4], sitk.sitkInt16)
    image += int(value)
    image.SetSpacing((1.0, 1.0, 3.0))
    return image


def build_picai_archive(prostatex: Path, base: Path) -> dict[str, Path]:
    """A PI-CAI archive and ``picai_labels`` checkout under ``base``; returns their paths.

    ``root``: fold folders of ``<pid>/<pid>_<sid>_<seq>.mha`` (the two real patients, an earlier
    study of 10795, a study whose patient is not in the marksheet, a study with T2 only, a macOS
    resource fork and a misplaced file). ``checkout``: ``clinical_information/marksheet.csv`` and
    ``csPCa_lesion_delineations/human_expert/resampled`` (``lesions``).
    """
    root, checkout = base / "picai_images", base / "picai_labels"
    lesions = checkout / "csPCa_lesion_delineations" / "human_expert" / "resampled"
    t2s = {}
    for case, (pid, sid, fold) in REAL.items():
        folder = root / fold / pid
        for seq in ("t2w", "adc", "hbv"):
            series = prostatex / case / seq
            path = _write_mha(read_image(series), folder / f"{pid}_{sid}_{seq}.mha", _dicom_tags(series))
            if seq == "t2w":
                t2s[pid] = read_image(path)
    pid, sid = EARLIER
    for seq in ("t2w", "adc", "hbv"):
        shutil.copy(root / REAL["ProstateX-0001"][2] / pid / f"{pid}_{REAL['ProstateX-0001'][1]}_{seq}.mha",
                    root / REAL["ProstateX-0001"][2] / pid / f"{pid}_{sid}_{seq}.mha")
    for seq in ("t2w", "adc", "hbv"):  # images of a patient the marksheet does not list
        _write_mha(_tiny(1), root / "picai_public_images_fold2" / "12345" / f"12345_1234567_{seq}.mha", {})
    _write_mha(_tiny(2), root / "picai_public_images_fold2" / "10100" / "10100_1000100_t2w.mha", {})  # T2 only
    (root / "picai_public_images_fold0" / "11373" / "._11373_1001396_t2w.mha").write_bytes(b"\0\5\26\7 AppleDouble")
    _write_mha(_tiny(3), root / "picai_public_images_fold2" / "misc" / "11373_1001396_t2w.mha", {})  # not in its folder
    (root / "README.txt").write_text("PI-CAI public training and development images\n")

    (checkout / "clinical_information").mkdir(parents=True)
    (checkout / "clinical_information" / "marksheet.csv").write_text(MARKSHEET)
    write_delineation(lesions / "11373_1001396.nii.gz", picai_like_labels(t2s["11373"], LESIONS), t2s["11373"])
    write_delineation(lesions / "10795_1000811.nii.gz",
                      np.zeros(sitk.GetArrayViewFromImage(t2s["10795"]).shape, np.uint8), t2s["10795"])
    write_delineation(lesions / "10000_1000000.nii.gz", np.zeros((4, 8, 8), np.uint8), _tiny(0))  # no images
    return {"root": root, "checkout": checkout, "lesions": lesions,
            "marksheet": checkout / "clinical_information" / "marksheet.csv"}


@pytest.fixture(scope="module")
def archive(prostatex: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_picai_archive(prostatex, tmp_path_factory.mktemp("picai"))


def test_studies_are_found_in_fold_folders_with_what_each_lacks(archive):
    scan = find_studies(archive["root"])
    assert sorted(scan.studies) == ["10100_1000100", "10795_1000790", "10795_1000811", "11373_1001396", "12345_1234567"]
    assert scan.patients == {"10100", "10795", "11373", "12345"}
    real = scan.studies["11373_1001396"]
    assert (real.patient_id, real.study_id, real.missing) == ("11373", "1001396", [])
    assert real.files["t2w"] == archive["root"] / "picai_public_images_fold0" / "11373" / "11373_1001396_t2w.mha"
    assert scan.studies["10100_1000100"].missing == ["hbv", "adc"]
    # the resource fork is skipped; the file outside its patient's folder is listed, not guessed at
    assert scan.unrecognised == [archive["root"] / "picai_public_images_fold2" / "misc" / "11373_1001396_t2w.mha"]


def test_a_study_in_two_folds_is_refused(tmp_path: Path):
    for fold in ("fold0", "fold0_copy"):
        _write_mha(_tiny(1), tmp_path / fold / "10001" / "10001_1000001_t2w.mha", {})
    with pytest.raises(InputError, match=r"1 image\(s\) found twice.*fold0/10001/10001_1000001_t2w.mha and .*fold0_copy"):
        find_studies(tmp_path)
    with pytest.raises(MissingInputError, match="does not exist"):
        find_studies(tmp_path / "absent")


def test_marksheet_is_read_as_written(archive, tmp_path: Path):
    sheet = read_marksheet(archive["marksheet"])
    assert list(sheet.index) == ["10000_1000000", "10100_1000100", "10795_1000790", "10795_1000811", "11373_1001396"]
    row = sheet.loc["10795_1000811"]
    assert (row["line"], row["lesion_gs"], row["case_cspca"], row["center"]) == (5, "3+3,0+0", "NO", "RUMC")
    # a spreadsheet's round trip: BOM, ids as 10000.0, a blank row
    edited = tmp_path / "edited.csv"
    edited.write_text("\ufeff" + MARKSHEET.replace("10000,1000000", "10000.0,1000000.0") + ",,,,,,,,,,,,,\n", encoding="utf-8")
    assert list(read_marksheet(edited).index)[0] == "10000_1000000"
    twice = tmp_path / "twice.csv"
    twice.write_text(MARKSHEET + MARKSHEET.splitlines()[-1] + "\n")
    with pytest.raises(InputError, match=r"11373_1001396 on lines 6, 7"):
        read_marksheet(twice)
    headless = tmp_path / "headless.csv"
    headless.write_text("patient,study\n1,2\n")
    with pytest.raises(InputError, match="not a PI-CAI marksheet: no patient_id or study_id column"):
        read_marksheet(headless)


@pytest.mark.parametrize("text, sums, highest", [
    ("4+3", [7], 7), ("3+3,0+0", [6], 6), ("N/A,3+4,4+3", [7, 7], 7), ("N/A,N/A,N/A,3+4", [7], 7),
    ("0+0", [], None), ("0+0,0+0", [], None), ("", [], None), ("N/A", [], None), ("3+2", [5], 5), ("4+5, 3+3", [9, 6], 9),
])
def test_lesion_gleason_lists(text, sums, highest):
    assert gleason_sums(text, where="x") == sums
    assert highest_gleason(text) == highest


@pytest.mark.parametrize("text, bad", [("4+", "4+"), ("3+3,4+", "4+"), ("3+4;4+4", "3+4;4+4"), ("0+3", "0+3"), ("7+1", "7+1")])
def test_malformed_gleason_is_refused_naming_the_token(text, bad):
    with pytest.raises(InputError, match=rf"line 9: lesion_GS {re.escape(repr(text))}: {re.escape(repr(bad))} is not a Gleason"):
        gleason_sums(text, where="line 9")


def test_yes_no_values():
    assert [parse_yes_no(v, where="x") for v in ("YES", "NO", "yes", "1", "0", "1.0", "N/A", "", None)] == \
        [1, 0, 1, 1, 0, 1, None, None, None]
    with pytest.raises(InputError, match=r"line 3: '2' is not yes/no"):
        parse_yes_no("2", where="line 3")


def test_the_latest_study_is_chosen_whatever_the_order():
    studies = [("1000790", "2010-03-15"), ("1000811", "2011-12-07"), ("1000500", None)]
    for order in (studies, studies[::-1], studies[1:] + studies[:1]):
        assert choose_study(order) == "1000811"
    assert choose_study([("1000002", "2015-01-01"), ("1000010", "2015-01-01")]) == "1000010"  # same day: highest id
    assert choose_study([("1000002", "not a date"), ("1000001", "2010-01-01")]) == "1000001"  # a date beats none
    assert choose_study([("999", None), ("1000", "N/A")]) == "1000"  # no dates: numeric order, not text order


def test_marksheet_is_found_from_the_labels_folder(archive, tmp_path: Path):
    assert find_marksheet(archive["root"], archive["lesions"]) == archive["marksheet"]
    assert find_marksheet(archive["root"], archive["checkout"]) == archive["marksheet"]
    local = tmp_path / "root"
    local.mkdir()
    (local / "marksheet.csv").write_text(MARKSHEET)
    assert find_marksheet(local, archive["lesions"]) == local / "marksheet.csv"  # the image folder's own first
    with pytest.raises(MissingInputError, match=rf"no PI-CAI marksheet.csv found; looked in {tmp_path}/elsewhere/marksheet.csv"):
        find_marksheet(tmp_path / "elsewhere")


def test_a_labels_checkout_means_its_expert_lesion_delineations(archive, tmp_path: Path):
    assert delineation_folders(archive["checkout"]) == [archive["lesions"]]
    assert delineation_folders(archive["lesions"]) == [archive["lesions"]]
    pooch = archive["checkout"] / "csPCa_lesion_delineations" / "human_expert" / "Pooch25"
    copy = tmp_path / "checkout"
    shutil.copytree(archive["checkout"], copy)
    (copy / pooch.relative_to(archive["checkout"])).mkdir()
    assert delineation_folders(copy) == [copy / archive["lesions"].relative_to(archive["checkout"]),
                                         copy / pooch.relative_to(archive["checkout"])]
    found = find_delineations(delineation_folders(archive["checkout"]))
    assert found == {c: archive["lesions"] / f"{c}.nii.gz" for c in ("10000_1000000", "10795_1000811", "11373_1001396")}


def test_delineation_keeps_its_isup_labels_on_the_exact_t2_grid(archive):
    t2 = archive["root"] / "picai_public_images_fold0" / "11373" / "11373_1001396_t2w.mha"
    path = archive["lesions"] / "11373_1001396.nii.gz"
    as_written = sitk.ReadImage(str(path))
    assert as_written.GetPixelID() == sitk.sitkUInt16
    assert Geometry.of(as_written) != Geometry.of(read_image(t2))  # a hair off, as the real files are
    labels = read_delineation(path, t2)
    assert Geometry.of(labels) == Geometry.of(read_image(t2))
    expected = picai_like_labels(read_image(t2), LESIONS)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(labels), expected)
    assert sorted(np.unique(expected).tolist()) == [0, 2, 3]
    negative = read_delineation(archive["lesions"] / "10795_1000811.nii.gz",
                                archive["root"] / "picai_public_images_fold1" / "10795" / "10795_1000811_t2w.mha")
    assert sitk.GetArrayViewFromImage(negative).max() == 0  # a negative study's empty file is read, not refused


def test_off_grid_or_float_delineations_are_refused_naming_the_file(archive, tmp_path: Path):
    t2_path = archive["root"] / "picai_public_images_fold0" / "11373" / "11373_1001396_t2w.mha"
    t2 = read_image(t2_path)
    labels = picai_like_labels(t2, LESIONS)
    turned = write_delineation(tmp_path / "turned.nii.gz", labels, t2, turn=1e-2)
    with pytest.raises(GeometryMismatchError, match=rf"turned.nii.gz: not on the grid of {t2_path}: .*mm apart"):
        read_delineation(turned, t2_path)
    soft = write_delineation(tmp_path / "soft.nii.gz", labels.astype(np.float32) * np.float32(1.0000001), t2,
                             dtype=np.float32)
    with pytest.raises(MaskError, match=r"soft.nii.gz: mask is not binary"):
        read_delineation(soft, t2_path)


def test_own_labels_file(tmp_path: Path):
    path = tmp_path / "bm.csv"
    path.write_text("Patient,BM,study_id\n11373,no,\n10795,YES,1000790\n10795,0,1000811\n")
    table = read_own_labels(path)
    assert table[["patient_id", "study_id", "label"]].values.tolist() == \
        [["11373", None, 0], ["10795", "1000790", 1], ["10795", "1000811", 0]]
    path.write_text("patient_id,label\n11373,1\n11373,0\n10795,maybe\n")
    with pytest.raises(InputError, match=r"line 4 \(patient '10795'\): 'maybe' is not yes/no.*11373 is labelled on lines 2, 3"):
        read_own_labels(path)
    path.write_text("patient_id,outcome\n11373,1\n")
    with pytest.raises(InputError, match="needs patient_id and label columns"):
        read_own_labels(path)
