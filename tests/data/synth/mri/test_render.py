"""Rendering one patient: realistic contrasts and geometry per centre, a BM signal in the images, site noise."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from osteomet.data.geometry import MIN_OVERLAP, Geometry, resample_to
from osteomet.data.images import read_image
from osteomet.data.label_masks import read_mask
from osteomet.data.manifest import read_manifest
from osteomet.data.synth.clinical import sample_patients
from osteomet.data.synth.mri import CENTRES, MRISynthConfig, generate_mri_cohort, synthesize_mri_patient


@pytest.fixture(scope="module")
def cases(mri_cohort: Path):
    """Per patient: T2, DWI and ADC on the T2 grid (physical space), tumour and prostate masks."""
    truth = pd.read_csv(mri_cohort.parent / "truth.csv").set_index("patient_id")
    out = []
    for record in read_manifest(mri_cohort):
        t2 = read_image(record.t2, pixel_type=sitk.sitkFloat32)
        mask = read_mask(record.mask, reference=t2)
        prostate = read_mask(mri_cohort.parent / truth.loc[record.patient_id, "prostate_mask"], reference=t2)
        dwi = resample_to(read_image(record.dwi), Geometry.of(t2), min_overlap=MIN_OVERLAP)
        adc = resample_to(read_image(record.adc), Geometry.of(t2), min_overlap=MIN_OVERLAP)
        images = {"t2": t2, "dwi": dwi, "adc": adc, "mask": mask, "prostate": prostate}
        arrays = {k: sitk.GetArrayFromImage(v) for k, v in images.items()}
        out.append((record, t2, read_image(record.dwi), arrays))
    return out


def _gland_around(tumour: np.ndarray, prostate: np.ndarray) -> np.ndarray:
    """Prostate tissue at least two voxels in-plane from the tumour (outside its partial volume)."""
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = True
    near = ndimage.binary_dilation(tumour, structure=structure, iterations=2)
    return prostate.astype(bool) & ~near


def test_tumour_is_dark_on_t2_and_adc_and_bright_on_high_b(cases):
    medians = []
    for record, _, _, a in cases:
        tumour = a["mask"].astype(bool)
        shell = _gland_around(tumour, a["prostate"])
        assert a["t2"][tumour].mean() < a["t2"][shell].mean(), record.patient_id
        assert a["adc"][tumour].mean() < a["adc"][shell].mean(), record.patient_id
        assert a["dwi"][tumour].mean() > 1.3 * a["dwi"][shell].mean(), record.patient_id
        medians.append(np.median(a["adc"][tumour]))
    # ADC of prostate cancer 0.6-1.0 x10^-3 mm2/s (stored as 10^-6); small tumours on the
    # coarse DWI grid pick up some of the surrounding gland, as on real scanners
    assert 600 < np.median(medians) < 1150 and max(medians) < 1500


def test_two_centres_differ_in_grid_orientation_and_vendor_scale(cases):
    by_centre = {}
    for record, t2, dwi, a in cases:
        by_centre.setdefault(record.centre, []).append((t2, dwi, a))
        # DWI/ADC: coarser matrix and a different field of view than T2
        assert dwi.GetSpacing()[0] > 1.25 * t2.GetSpacing()[0]
        assert not np.allclose(dwi.GetOrigin(), t2.GetOrigin(), atol=1.0)
    assert set(by_centre) == {"C1", "C2"}
    c1_t2, _, c1_a = by_centre["C1"][0]
    c2_t2, _, c2_a = by_centre["C2"][0]
    assert c1_t2.GetSpacing()[0] == pytest.approx(0.39 * 512 / 128, rel=0.01)
    assert c2_t2.GetSpacing()[0] == pytest.approx(0.63 * 320 / 80, rel=0.01)
    assert c1_t2.GetSpacing()[2] == c2_t2.GetSpacing()[2] == 4.0
    assert np.allclose(c1_t2.GetDirection(), np.eye(3).ravel())
    assert not np.allclose(c2_t2.GetDirection(), np.eye(3).ravel())  # oblique axial at C2
    assert np.percentile(c1_a["t2"], 90) > 1.5 * np.percentile(c2_a["t2"], 90)


# --- the BM signal as a model sees it: in the rendered volumes, not in hidden columns ---------

@pytest.fixture(scope="module")
def rendered_tumour_adc(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """Mean ADC (10^-6 mm2/s) inside the tumour mask, per patient of a 48-patient small-scale cohort."""
    out = tmp_path_factory.mktemp("signal")
    manifest = generate_mri_cohort(out, 48, seed=21, config=MRISynthConfig(scale=0.2, slices=12))
    rows = []
    for record in read_manifest(manifest):  # on the T2 grid in physical space, as the models see it
        t2 = read_image(record.t2, pixel_type=sitk.sitkFloat32)
        mask = sitk.GetArrayFromImage(read_mask(record.mask, reference=t2)).astype(bool)
        adc = sitk.GetArrayFromImage(resample_to(read_image(record.adc), Geometry.of(t2), min_overlap=MIN_OVERLAP))
        rows.append({"label": record.label, "adc": float(adc[mask].mean())})
    return pd.DataFrame(rows)


def test_rendered_tumour_adc_is_lower_with_bone_metastases(rendered_tumour_adc: pd.DataFrame):
    by_label = rendered_tumour_adc.groupby("label")["adc"]
    assert by_label.size().min() >= 10  # both classes well represented
    # BM tumours are more cellular: mean ADC clearly lower, as on real scanners (> 0.1 x10^-3 mm2/s)
    assert by_label.mean()[0] - by_label.mean()[1] > 100
    # one feature read off the images already separates the classes well above chance
    assert roc_auc_score(rendered_tumour_adc["label"], -rendered_tumour_adc["adc"]) > 0.75


def test_rendered_tumour_adc_is_not_a_perfect_separator(rendered_tumour_adc: pd.DataFrame):
    # BM and non-BM tumours overlap (partial volume, grade, patient variation), as in the study
    assert roc_auc_score(rendered_tumour_adc["label"], -rendered_tumour_adc["adc"]) < 0.98
    highest_bm = rendered_tumour_adc.query("label == 1")["adc"].max()
    lowest_no_bm = rendered_tumour_adc.query("label == 0")["adc"].min()
    assert highest_bm > lowest_no_bm  # the two ranges overlap


def test_c2_noise_factor_scales_only_centre_c2_noise():
    """Same seed, same anatomy: twice the noise SD gives twice the background magnitude at C2, none at C1."""
    phenotype = sample_patients(1, seed=0, centre="C2").iloc[0].to_dict()

    def render(centre: str, factor: float) -> np.ndarray:
        config = MRISynthConfig(scale=0.15, c2_noise_factor=factor)
        image = synthesize_mri_patient(centre, phenotype, np.random.default_rng(7), config)["t2"]
        return sitk.GetArrayFromImage(image).astype(float) - CENTRES[centre].t2_offset

    base, noisy = render("C2", 1.0), render("C2", 2.0)
    air = (base > 5) & (base < 4 * 0.03 * CENTRES["C2"].t2_scale)  # background: Rician noise of SD 0.03 only
    assert air.sum() > 500
    assert np.median(noisy[air] / base[air]) == pytest.approx(2.0, rel=0.05)  # per voxel: |2n| / |n|
    np.testing.assert_array_equal(render("C1", 1.0), render("C1", 2.0))
