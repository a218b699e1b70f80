"""The applicability domain end to end: a study whose external centre stores DWI at double scale, a swapped T2/ADC
given to predict, and the real ProstateX patients through predict with the verdict and its reasons."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from osteomet.cli.main import app
from osteomet.layout import RunLayout
from tests.pipeline.studies import study_file

runner = CliRunner()
#: The external centre: centre C1's scanner, its high-b DWI written at twice the intensity scale (another
#: vendor scaling, an unnormalised export); after the per-patient z-score the models see the same images.
SHIFTED = "C3"


def shifted_cohort(out: Path, n_reference: int = 30, n_shifted: int = 8) -> Path:
    """Centre C1 patients, and ``n_shifted`` more drawn from C1's scanner as centre C3 with their DWI doubled."""
    import SimpleITK as sitk

    from osteomet.data.manifest import read_manifest, with_absolute_paths
    from osteomet.data.synth.mri import MRISynthConfig, generate_mri_cohort

    reference = generate_mri_cohort(out / "C1", n_reference, seed=5, config=MRISynthConfig(external_fraction=0.0))
    shifted = generate_mri_cohort(out / SHIFTED, n_shifted, seed=21, config=MRISynthConfig(external_fraction=0.0))
    frames = []
    for manifest, centre, prefix in ((reference, "C1", "A"), (shifted, SHIFTED, "S")):
        frame = with_absolute_paths(read_manifest(manifest).to_frame(), "mri").drop(columns=["split"])
        frame["centre"] = centre
        frame["patient_id"] = prefix + frame["patient_id"].astype(str)
        frames.append(frame)
    for path in frames[1]["dwi"]:
        image = sitk.ReadImage(path)
        doubled = sitk.Cast(sitk.Cast(image, sitk.sitkFloat32) * 2.0, image.GetPixelID())
        sitk.WriteImage(doubled, path)
    path = out / "study.csv"
    pd.concat(frames).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, Path, dict]:
    from osteomet.pipeline.run_mri import run_mri
    from osteomet.pipeline.study import load_study_config

    cohort = shifted_cohort(tmp_path_factory.mktemp("shifted_cohort"))
    run = tmp_path_factory.mktemp("shift_study") / "run"
    # the stability filter and SHAP do not touch the applicability domain (their own tests cover them)
    config = load_study_config(study_file(run.parent / "config", split={"external_centres": [SHIFTED]},
                                          stability={"enabled": False}, explanations={"enabled": False}))
    return run, cohort, run_mri(cohort, run, config, log=lambda _line: None)


def test_a_doubled_dwi_scale_at_the_external_centre_is_flagged_and_the_reference_centre_is_not(study):
    from osteomet.report.applicability_sections import applicability_section

    run, _, record = study
    layout = RunLayout(run)
    assert "applicability" in record["stages"]
    flags = pd.read_csv(layout.applicability / "flags.csv", dtype={"patient_id": str})
    assert (flags["applicability"] != "not checked").all()
    external = flags[flags["split"] == "external"]
    reference = flags[flags["split"].isin(["val", "test"])]
    assert set(external["centre"]) == {SHIFTED} and set(reference["centre"]) == {"C1"}
    shifted_rate = float((external["applicability"] == "outside").mean())
    reference_rate = float((reference["applicability"] == "outside").mean())
    train_rate = float((flags.loc[flags["split"] == "train", "applicability"] == "outside").mean())
    print(f"outside the domain: external {SHIFTED} (DWI x2) {shifted_rate:.0%} of {len(external)}, reference C1 "
          f"val+test {reference_rate:.0%} of {len(reference)}, training (out-of-fold) {train_rate:.0%}")
    assert shifted_rate == 1.0
    # the reference centre pays the price of the checks at this size (18 training patients: a distance threshold
    # at the 99th percentile of 18 cross-validated distances, about the largest), not the shift
    pooled = flags[flags["centre"] == "C1"]
    assert (pooled["applicability"] == "outside").mean() <= 0.3
    for reasons in external["reasons"]:  # the DWI intensities say why, in words with the study's range
        assert "DWI 50th percentile in the gland region" in reasons and "study range" in reasons
    # the check that sees the planted shift flags every shifted patient and no reference patient
    failed = flags.set_index("patient_id")["failed"].fillna("").str.split(";")
    assert all("dwi_gland_p50" in failed[p] for p in external["patient_id"])
    assert not any("dwi_gland_p50" in failed[p] for p in pooled["patient_id"])
    assert (flags.loc[flags["split"] == "train", "verdict_from"] == "out-of-fold").all()
    # flag_rates.csv is the same count, with its Wilson interval; the report shows it
    rates = pd.read_csv(layout.applicability / "flag_rates.csv").set_index("split")
    assert rates.loc["external", "outside"] == len(external) and rates.loc["external", "ci_high"] == 1.0
    assert rates.loc["test", "rate"] == pytest.approx((flags.loc[flags["split"] == "test", "applicability"]
                                                       == "outside").mean())
    section = applicability_section(layout)
    assert section.present and "DWI 50th percentile in the gland region" in section.body
    domain = json.loads((layout.applicability / "domain.json").read_text(encoding="utf-8"))
    assert {d["name"] for d in domain["distances"]} == {"radiomics", "deep"}
    selected = json.loads((layout.model("radiomics") / "model" / "radiomics_model.json").read_text(encoding="utf-8"))
    assert next(d for d in domain["distances"] if d["name"] == "radiomics")["columns"] == \
        selected["selector"]["selected"]
    missingness = json.loads((layout.applicability / "missingness.json").read_text(encoding="utf-8"))
    assert missingness["n_train"] == int((flags["split"] == "train").sum())
    assert missingness["training"]["gleason"]["missing"] == 0  # the synthetic cohorts always record Gleason


def _effective_mask(layout: RunLayout, patient_id: str) -> Path:
    from osteomet.data.manifest import read_manifest
    from osteomet.data.masks import mask_sources

    sources = mask_sources(read_manifest(layout.cohort / "manifest.csv"), layout.masks).set_index("patient_id")
    return Path(sources.loc[patient_id, "mask"])


def test_swapped_t2_and_adc_given_to_predict_are_flagged(study, tmp_path):
    """The reference patient as the study saw it is within the domain; its T2 and ADC files swapped are not."""
    import SimpleITK as sitk

    from osteomet.pipeline.predict_mri import predict_mri

    run, _, _ = study
    layout = RunLayout(run)
    flags = pd.read_csv(layout.applicability / "flags.csv", dtype={"patient_id": str})
    manifest = pd.read_csv(layout.manifest, dtype={"patient_id": str}).set_index("patient_id")
    patient = flags[(flags["split"] == "test") & (flags["applicability"] == "within")]["patient_id"].iloc[0]
    row, mask = manifest.loc[patient], _effective_mask(layout, patient)
    base = layout.manifest.parent
    kept = predict_mri(run, tmp_path / "same", t2=base / row["t2"], dwi=base / row["dwi"], adc=base / row["adc"],
                       mask=mask, patient_id=patient, centre="C1", log=lambda _line: None)
    assert kept["applicability"] == "within" and kept["applicability_reasons"] == []

    adc = sitk.ReadImage(str(base / row["adc"]))  # the user's mask, drawn on what they gave as T2
    on_adc = sitk.Resample(sitk.ReadImage(str(mask)), adc, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    sitk.WriteImage(on_adc, str(tmp_path / "mask_on_adc.nii.gz"))
    swapped = predict_mri(run, tmp_path / "swapped", t2=base / row["adc"], dwi=base / row["dwi"],
                          adc=base / row["t2"], mask=tmp_path / "mask_on_adc.nii.gz", patient_id=patient, centre="C1",
                          log=lambda _line: None)
    reasons = swapped["applicability_reasons"]
    assert swapped["applicability"] == "outside", reasons
    named = " ".join(reasons)
    for expected in ("T2 50th percentile in the gland region", "ADC 50th percentile in the gland region",
                     "T2 in-plane spacing"):
        assert expected in named, reasons
    text = (tmp_path / "swapped" / "result.md").read_text(encoding="utf-8")
    assert "**applicability: outside**" in text and "- T2 50th percentile in the gland region" in text


def _drawn_mask(t2: Path, out: Path, radius_mm: float = 8.0) -> Path:
    """A reader's tumour mask on the T2 grid: a sphere at the centre of the field of view (the gland)."""
    import numpy as np
    import SimpleITK as sitk

    from osteomet.data.images import read_image

    image = read_image(t2)
    nx, ny, nz = image.GetSize()
    sx, sy, sz = image.GetSpacing()
    z, y, x = np.meshgrid(*((np.arange(n) - (n - 1) / 2) * s for n, s in ((nz, sz), (ny, sy), (nx, sx))),
                          indexing="ij")
    mask = sitk.GetImageFromArray((np.sqrt(x ** 2 + y ** 2 + z ** 2) <= radius_mm).astype(np.uint8))
    mask.CopyInformation(image)
    sitk.WriteImage(mask, str(out))
    return out


@pytest.mark.parametrize("case, mask", [("ProstateX-0001", "unetr"), ("ProstateX-0000", "drawn")])
def test_real_prostatex_patients_through_predict_show_the_applicability_result(study, prostatex, tmp_path, case,
                                                                               mask):
    """ProstateX-0001 with the study's UNETR mask; on ProstateX-0000 this study's 2-epoch UNETR finds no tumour,
    so a reader's mask is given (predict's applicability is the same either way)."""
    run, _, _ = study
    folder = prostatex / case
    out = tmp_path / "px"
    given = ["--mask", str(_drawn_mask(folder / "t2w", tmp_path / "mask.nii.gz"))] if mask == "drawn" else []
    result = runner.invoke(app, ["predict", "mri", "--model", str(run), "--t2", str(folder / "t2w"), "--dwi",
                                 str(folder / "hbv"), "--adc", str(folder / "adc"), "--clinical", "age=66,psa=12.1",
                                 "--id", case, "-o", str(out), *given])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "result.json").read_text(encoding="utf-8"))
    # a real 3T acquisition against a study of synthetic patients: another grid, another intensity scale
    assert saved["applicability"] == "outside"
    reasons = saved["applicability_reasons"]
    assert any(r.startswith("T2 in-plane spacing") for r in reasons)
    assert any(" percentile in the gland region " in r and "study range" in r for r in reasons)
    details = saved["applicability_details"]
    assert details["checks"] >= len(reasons) and set(details["distances"]) == {"radiomics", "deep"}
    markdown = (out / "result.md").read_text(encoding="utf-8")
    assert "**applicability: outside**" in markdown and all(f"- {r}" in markdown for r in reasons)
    assert "applicability: outside" in result.output
    # Gleason, ISUP, hematuria and leukocyturia are missing: what they could change is stated, with the range
    missing = saved["missing_values"]
    assert missing["missing"] == ["gleason", "isup", "hematuria", "leukocyturia"]
    assert any(s.startswith("Prediction range over plausible values of the missing gleason, isup, hematuria, "
                            "leukocyturia") for s in missing["statements"])
    low, high = missing["models"]["clinical"]["low"], missing["models"]["clinical"]["high"]
    assert low <= high and 0 <= low and high <= 1
    assert "Missing clinical values (each tried at its plausible values" in markdown
    print(f"{case}: {saved['applicability']}, {len(reasons)} of {details['checks']} checks failed; "
          f"fusion {saved['probability']:.3f}, range over missing values {missing['models']['fusion']['low']:.3f}-"
          f"{missing['models']['fusion']['high']:.3f}\n" + markdown[:3000])
