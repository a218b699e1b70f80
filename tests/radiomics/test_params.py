from pathlib import Path

import pytest

from osteomet.radiomics.params import RadiomicsParamsError, load_params


@pytest.mark.parametrize("name", ["mri", "ct", "tiny"])
def test_builtin_parameter_files_pass_pyradiomics_schema(name: str):
    params = load_params(name)
    assert params["setting"]["label"] == 1
    assert "LBP3D" not in params["imageType"]


def test_defaults_cover_every_feature_class_and_image_type():
    params = load_params(modality="mri")
    assert set(params["featureClass"]) == {"firstorder", "shape", "glcm", "glrlm", "glszm", "gldm", "ngtdm"}
    assert set(params["imageType"]) == {"Original", "LoG", "Wavelet"}
    assert params["setting"]["normalize"] is True
    assert load_params(modality="ct")["setting"]["normalize"] is False  # HU are absolute


def test_bad_files_are_named(tmp_path: Path):
    bad = tmp_path / "p.yaml"
    bad.write_text("setting:\n  binWidht: 5\n")
    with pytest.raises(RadiomicsParamsError, match=r"(?s)p.yaml: rejected by pyradiomics.*binWidht"):
        load_params(bad)
    bad.write_text("imageType:\n  LBP3D: {}\n")
    with pytest.raises(RadiomicsParamsError, match="LBP3D fails with scipy"):
        load_params(bad)
    with pytest.raises(RadiomicsParamsError, match="does not exist"):
        load_params(tmp_path / "none.yaml")
