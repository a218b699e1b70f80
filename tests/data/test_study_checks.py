"""The checks a study runs on its manifest before its first stage: labels per split and image headers."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from osteomet.cli.main import app
from osteomet.data.study_checks import check_study_images, check_study_labels
from osteomet.errors import InputError
from tests.data.volumes import mixed_series_folder


def _frame(splits: list[str], labels: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"patient_id": [f"P{i}" for i in range(len(splits))], "split": splits, "label": labels})


def test_training_patients_need_labels_and_every_scored_split_both_classes():
    check_study_labels(_frame(["train"] * 4 + ["val"] * 2 + ["test"] * 2, [0, 1, 0, 1, 0, 1, 1, 0]), source="m.csv")
    # unlabelled test patients are scored only: allowed
    check_study_labels(_frame(["train"] * 4 + ["val"] * 2 + ["test"], [0, 1, 0, 1, 0, 1, np.nan]), source="m.csv")
    with pytest.raises(InputError, match=r"m\.csv: .*1 training patient\(s\) without a label \(P2\)"):
        check_study_labels(_frame(["train"] * 4 + ["val"] * 2, [0, 1, np.nan, 1, 0, 1]), source="m.csv")
    with pytest.raises(InputError, match=r"split 'val' holds only label 1 \(2 patient\(s\)\).*model selection") as err:
        check_study_labels(_frame(["train"] * 4 + ["val"] * 2 + ["external"] * 2, [0, 1, 0, 1, 1, 1, 0, 0]),
                           source="m.csv")
    assert "split 'external' holds only label 0" in str(err.value)  # every problem in one message


def _nifti(path: Path, shape: tuple[int, ...], zooms: tuple[float, ...] | None = None) -> Path:
    image = nib.Nifti1Image(np.ones(shape, dtype=np.float32), np.eye(4))
    if zooms is not None:
        image.header.set_zooms(zooms)
    nib.save(image, path)
    return path


class _Record:
    def __init__(self, patient_id: str, **paths: Path):
        self.patient_id, self.paths = patient_id, paths

    def __getattr__(self, name: str):
        return self.__dict__["paths"].get(name)

    def series_uid(self, _name: str) -> None:
        return None


def test_image_headers_are_checked_for_every_patient_and_named_in_one_error(tmp_path, prostatex):
    good = _nifti(tmp_path / "good.nii.gz", (8, 8, 4))
    four_d = _nifti(tmp_path / "fmri.nii.gz", (8, 8, 4, 3))
    flat = _nifti(tmp_path / "flat.nii.gz", (8, 8, 4), zooms=(0.5, 0.5, 0.0))  # slice spacing lost
    mixed = mixed_series_folder(prostatex / "ProstateX-0000", tmp_path / "mixed")  # as a PACS export often has
    check_study_images([_Record("P0", t2=good, dwi=good, adc=prostatex / "ProstateX-0000" / "adc")],
                       ("t2", "dwi", "adc"), source="m.csv")
    records = [_Record("P1", t2=four_d, dwi=good), _Record("P2", t2=flat, dwi=good), _Record("P3", t2=mixed),
               _Record("P4", t2=tmp_path / "gone.nii.gz")]
    with pytest.raises(InputError) as err:
        check_study_images(records, ("t2", "dwi"), source="m.csv")
    text = str(err.value)
    assert text.startswith("m.csv: 4 image(s) cannot be used, nothing was run")
    assert "P1 (t2): " in text and "expected a 3D volume, got 4D" in text
    assert "P2 (t2): " in text and "z 0 mm in pixdim" in text
    assert "P3 (t2): " in text and "2 DICOM series in one folder" in text and "_series_uid" in text
    assert "P4 (t2): " in text and "does not exist" in text


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory) -> Path:
    from osteomet.data.synth.mri import generate_mri_cohort

    return generate_mri_cohort(tmp_path_factory.mktemp("checks"), 12, seed=2)


def _tiny_config(folder: Path) -> Path:
    from tests.pipeline.studies import study_file

    return study_file(folder)


def test_run_mri_refuses_a_4d_t2_before_any_stage_and_names_a_nan_t2_at_preprocessing(small_cohort, tmp_path):
    import SimpleITK as sitk

    frame = pd.read_csv(small_cohort)
    base = small_cohort.parent
    broken = frame.copy()
    broken.loc[0, "t2"] = str(_nifti(tmp_path / "fmri.nii.gz", (8, 8, 4, 3)))
    for column in ("t2", "dwi", "adc", "mask"):
        broken[column] = [v if Path(v).is_absolute() else str(base / v) for v in broken[column]]
    broken.to_csv(tmp_path / "four_d.csv", index=False)
    config = _tiny_config(tmp_path / "config")
    runner = CliRunner()
    result = runner.invoke(app, ["run", "mri", "-m", str(tmp_path / "four_d.csv"), "-o", str(tmp_path / "run4d"),
                                 "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert f"{frame.loc[0, 'patient_id']} (t2): " in result.output and "got 4D" in result.output
    assert not (tmp_path / "run4d" / "split").exists() and not (tmp_path / "run4d" / "preprocess").exists()

    # NaN voxels pass the header check: preprocessing finds them, and the study stops there naming the patient
    nan_t2 = sitk.ReadImage(str(base / frame.loc[1, "t2"]), sitk.sitkFloat32)
    array = sitk.GetArrayFromImage(nan_t2)
    array[2, 5, 5] = np.nan
    with_nan = sitk.GetImageFromArray(array)
    with_nan.CopyInformation(nan_t2)
    sitk.WriteImage(with_nan, str(tmp_path / "nan_t2.nii.gz"))
    broken = frame.copy()
    for column in ("t2", "dwi", "adc", "mask"):
        broken[column] = [str(base / v) for v in broken[column]]
    broken.loc[1, "t2"] = str(tmp_path / "nan_t2.nii.gz")
    broken.to_csv(tmp_path / "nan.csv", index=False)
    result = runner.invoke(app, ["run", "mri", "-m", str(tmp_path / "nan.csv"), "-o", str(tmp_path / "runnan"),
                                 "--config", str(config)])
    assert result.exit_code == 3, result.output  # some patients failed: the others are kept
    message = " ".join(result.output.split())
    assert f"preprocessing failed for 1 of 12 patient(s): {frame.loc[1, 'patient_id']}: " in message
    assert "NaN or infinite" in message and "not in the cache" not in message
    assert (tmp_path / "runnan" / "preprocess" / "index.csv").is_file()
    assert not (tmp_path / "runnan" / "segmentation").exists()
