"""Series rules: the shipped YAML, a user's rules, picai_prep mappings, and the choice per patient."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from osteomet.data.dicom_tree import ScanResult, SeriesInfo, scan_tree
from osteomet.data.series_rules import MAPPING_SCORE, RULES_FILE, choose, classify, load_mapping, load_rules
from osteomet.errors import InputError
from tests.data.test_dicom_tree import Export, pacs_export

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Export:
    return pacs_export(tmp_path_factory.mktemp("pacs_rules"))


@pytest.fixture(scope="module")
def scan(export: Export) -> ScanResult:
    return scan_tree(export.root, settings=load_rules().scan_settings(), jobs=1)


@pytest.fixture(scope="module")
def series(export: Export, scan: ScanResult) -> dict[str, SeriesInfo]:
    found = {s.series_uid: s for s in scan.series}
    return {name: found[uid] for name, uid in export.uids.items()}


def test_shipped_rules_load() -> None:
    rules = load_rules()
    assert rules.high_b_min == 800
    assert {r.role for r in rules.rules} == {"t2", "dwi", "adc", "ct", "localiser", "other"}
    assert [t.name.split()[0] for t in rules.b_value_tags] == ["DiffusionBValue", "Siemens", "GE", "Philips"]
    assert RULES_FILE.is_file()


@pytest.mark.parametrize(("name", "role", "rule"), [
    ("0000/t2", "t2", "t2-axial"),
    ("0000/dwi", "dwi", "dwi-high-b"),
    ("0000/adc", "adc", "adc-image-type"),
    ("0000/adc_second", "adc", "adc-image-type"),
    ("0000/t2_sagittal", "other", "t2-sagittal-or-coronal"),
    ("0000/localiser", "localiser", "localiser-image-type"),
    ("0000/dwi_b50_ge", "other", "dwi-low-b"),
    ("0001/S2/t2", "t2", "t2-axial"),
    ("0001/S2/dwi", "dwi", "dwi-high-b"),
    ("0001/S2/adc", "adc", "adc-image-type"),
])
def test_real_series_classified(series: dict[str, SeriesInfo], name: str, role: str, rule: str) -> None:
    result = classify(series[name], load_rules())
    assert (result.role, result.rule) == (role, rule), result.why


def test_why_names_the_evidence(series: dict[str, SeriesInfo]) -> None:
    rules = load_rules()
    assert "1400" in classify(series["0001/S2/dwi"], rules).why and "Philips" in classify(series["0001/S2/dwi"], rules).why
    assert "highest b-value 50" in classify(series["0000/dwi_b50_ge"], rules).why
    assert "LOCALIZER" in classify(series["0000/localiser"], rules).why
    assert "sagittal" in classify(series["0000/t2_sagittal"], rules).why


@pytest.mark.parametrize(("description", "image_type", "orientation", "b_values", "role", "rule"), [
    ("T2W_TSE_ax", ("ORIGINAL", "PRIMARY"), "axial", (), "t2", "t2-axial"),
    ("Ax T2 FRFSE", ("ORIGINAL", "PRIMARY"), "axial", (), "t2", "t2-axial"),
    ("t2_tse_tra_fs", ("ORIGINAL", "PRIMARY"), "axial", (), "other", "t2-fat-suppressed"),
    ("t2_tse_cor", ("ORIGINAL", "PRIMARY"), "coronal", (), "other", "t2-sagittal-or-coronal"),
    ("ep2d_diff_b50_800_1400_tra_ADC", ("DERIVED", "PRIMARY", "DIFFUSION", "ADC"), "axial", (), "adc",
     "adc-image-type"),
    ("dADC", ("DERIVED", "PRIMARY"), "axial", (), "adc", "adc-description"),
    ("Apparent Diffusion Coefficient (mm2/s)", ("DERIVED", "SECONDARY"), "axial", (), "adc", "adc-description"),
    ("eADC", ("DERIVED", "PRIMARY"), "axial", (), "other", "diffusion-other-map"),
    ("dDWI", ("ORIGINAL", "PRIMARY"), "axial", (), "dwi", "dwi-description"),
    ("sDWI", ("ORIGINAL", "PRIMARY"), "axial", (), "dwi", "dwi-description"),
    ("ep2d_diff_tra_b1400", ("ORIGINAL", "PRIMARY"), "axial", (), "dwi", "dwi-high-b-description"),
    ("DWI b50", ("ORIGINAL", "PRIMARY"), "axial", (), "other", "dwi-low-b-description"),
    ("ep2d_diff_b50_800_1400_tra_TRACEW", ("ORIGINAL", "PRIMARY", "DIFFUSION", "TRACEW"), "axial",
     (50.0, 800.0, 1400.0), "dwi", "dwi-high-b"),
    ("localizer", ("ORIGINAL", "PRIMARY"), "axial", (), "localiser", "localiser-description"),
    ("AAHScout", ("ORIGINAL", "PRIMARY"), "sagittal", (), "localiser", "localiser-description"),
    ("anything", ("ORIGINAL", "PRIMARY"), "mixed", (), "localiser", "localiser-mixed-planes"),
    ("t1_vibe_tra_dyn", ("ORIGINAL", "PRIMARY"), "axial", (), "other", "dynamic-or-t1"),
    ("tfl3d PD reftra", ("ORIGINAL", "PRIMARY"), "axial", (), "other", "dynamic-or-t1"),
])
def test_vendor_descriptions(series: dict[str, SeriesInfo], description: str, image_type: tuple[str, ...],
                             orientation: str, b_values: tuple[float, ...], role: str, rule: str) -> None:
    s = dataclasses.replace(series["0000/t2"], description=description, image_type=image_type,
                            orientation=orientation, b_values=b_values, b_source="test" if b_values else "",
                            echo_time=60.0)
    result = classify(s, load_rules())
    assert (result.role, result.rule) == (role, rule), result.why


def test_t2_by_timing_when_the_description_says_nothing(series: dict[str, SeriesInfo]) -> None:
    s = series["0000/t2"]
    assert s.echo_time and s.echo_time >= 80 and "SE" in s.scanning_sequence
    result = classify(dataclasses.replace(s, description="series 4"), load_rules())
    assert (result.role, result.rule, result.score) == ("t2", "t2-axial-timing", 1)


def test_ct_rules(scan: ScanResult) -> None:
    rules = load_rules()
    ct = [s for s in scan.series if s.modality == "CT"]
    assert {classify(s, rules).rule for s in ct} == {"ct-axial-original"}
    head = dataclasses.replace(ct[0], body_part="HEAD")
    assert classify(head, rules).rule == "ct-head"
    coronal = dataclasses.replace(ct[0], orientation="coronal")
    assert classify(coronal, rules).role == "other"


def test_user_rules_come_first(tmp_path: Path, series: dict[str, SeriesInfo]) -> None:
    extra = tmp_path / "rules.yaml"
    extra.write_text("rules:\n  - name: site-t2\n    role: t2\n    score: 2\n    description: 'prostate_hr'\n"
                     "    why: 'our site names the T2 {description!r}'\nhigh_b_min: 1200\n"
                     "ct:\n  slice_thickness_mm: [2, 3]\n")
    rules = load_rules(extra)
    assert rules.rules[0].name == "site-t2" and len(rules.rules) == len(load_rules().rules) + 1
    assert rules.high_b_min == 1200 and rules.ct.slice_thickness_mm == (2, 3)
    assert classify(series["0000/dwi"], rules).rule == "dwi-low-b"  # b=1000 is below the user's high-b minimum
    assert classify(series["0000/dwi"], load_rules()).rule == "dwi-high-b"
    assert rules.ct.preferred_kernel == load_rules().ct.preferred_kernel  # kept where the user says nothing
    result = classify(dataclasses.replace(series["0000/t2"], description="prostate_hr"), rules)
    assert (result.rule, result.why) == ("site-t2", "our site names the T2 'prostate_hr'")


@pytest.mark.parametrize(("text", "message"), [
    ("rules:\n  - name: x\n    role: t2\n    description: '(unclosed'\n    why: w\n", "rule 'x'"),
    ("rules:\n  - name: x\n    role: t3\n    why: w\n", "role"),
    ("rules:\n  - name: x\n    role: t2\n    why: '{patient}'\n", "unknown field"),
    ("rules:\n  - name: t2-axial\n    role: t2\n    why: w\n", "unique"),
    ("colour: blue\n", "unknown key"),
    ("- a\n- b\n", "a mapping"),
])
def test_bad_user_rules_named(tmp_path: Path, text: str, message: str) -> None:
    extra = tmp_path / "rules.yaml"
    extra.write_text(text)
    with pytest.raises(InputError, match=message) as error:
        load_rules(extra)
    assert str(extra) in str(error.value)


def _mapping(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "mapping.json"
    path.write_text(json.dumps(data))
    return path


def test_picai_mapping_as_is(tmp_path: Path, series: dict[str, SeriesInfo]) -> None:
    """picai_prep's README mapping: values equal after lower-casing and stripping, keys any case."""
    path = _mapping(tmp_path, {"archive": [], "mappings": {
        "t2w": {"SeriesDescription": ["T2_TSE_TRA "]},
        "adc": {"seriesdescription": ["ep2d_diff_tra_DYNDIST_ADC", "ep2d_diff_tra_DYNDIST_MIX_ADC"]},
        "hbv": {"0008|103e": ["ep2d_diff_tra_DYNDISTCALC_BVAL"]}}})
    mapping = load_mapping(path)
    rules = load_rules()
    scan_rules = rules.scan_settings(mapping)
    assert scan_rules.extra_tags == ((("0008|103E"), (0x0008, 0x103E)),)
    s = dataclasses.replace(series["0000/t2"], extra={"0008|103E": "t2_tse_tra"})
    result = classify(s, rules, mapping)
    assert (result.role, result.rule, result.score) == ("t2", "mapping:t2w", MAPPING_SCORE)
    assert "t2_tse_tra" in result.why
    adc = dataclasses.replace(series["0000/adc"], extra={"0008|103E": "ep2d_diff_tra_DYNDIST_ADC"})
    assert classify(adc, rules, mapping).rule == "mapping:adc"
    # equality, not containment: a longer description is not the mapped series
    fat = dataclasses.replace(series["0000/t2"], extra={"0008|103E": "t2_tse_tra_fs"}, description="t2_tse_tra_fs")
    assert classify(fat, rules, mapping).rule == "t2-fat-suppressed"
    # unmatched series fall back to the rules, unless the mapping alone decides its roles
    sag = dataclasses.replace(series["0000/dwi"], extra={"0008|103E": "other"})
    assert classify(sag, rules, mapping).rule == "dwi-high-b"
    only = classify(sag, rules, mapping, mapping_only=True)
    assert only.role == "other" and "--mapping-only" in only.why


def test_mapping_match_variants(tmp_path: Path, series: dict[str, SeriesInfo]) -> None:
    contains = load_mapping(_mapping(tmp_path, {"mappings": {"adc": {"SeriesDescription": ["adc"]}},
                                                "options": {"values_match_func": "lower_strip_contains"}}))
    s = dataclasses.replace(series["0000/adc"], extra={"0008|103E": "ep2d_diff_tra_DYNDIST_ADC"})
    assert classify(s, load_rules(), contains).rule == "mapping:adc"
    by_uid = load_mapping(_mapping(tmp_path, {"mappings": {"adc": {"SeriesInstanceUID": ["1.2.3"]}}}))
    assert by_uid.tags == [("0020|000E", (0x0020, 0x000E))]


@pytest.mark.parametrize(("data", "message"), [
    ({"mappings": {"t2w": {"NoSuchAttribute": ["x"]}}}, "not a DICOM attribute"),
    ({"mappings": {"t2w": {"SeriesDescription": "t2"}}}, "must list strings"),
    ({"archive": []}, "\"mappings\""),
    ({"mappings": {"t2w": {"SeriesDescription": ["x"]}}, "options": {"values_match_func": "fuzzy"}},
     "values_match_func"),
])
def test_bad_mappings_named(tmp_path: Path, data: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_mapping(_mapping(tmp_path, data))


def _choose(members: list[SeriesInfo], mapping=None):
    rules = load_rules()
    classes = {s.key: classify(s, rules, mapping) for s in members}
    names = {k: f"S{i + 1}" for i, k in enumerate(sorted({(s.study_date, s.study_time, s.study_key)
                                                          for s in members}))}
    return choose(members, classes, rules, {k[2]: v for k, v in names.items()}), classes


def test_equal_candidates_are_ambiguous(scan: ScanResult, series: dict[str, SeriesInfo]) -> None:
    patient = [s for s in scan.series if s.patient_key == "id:ProstateX-0000"]
    choice, _ = _choose(patient)
    assert choice.chosen["t2"].series is series["0000/t2"]
    assert choice.chosen["dwi"].series is series["0000/dwi"]
    assert "adc" not in choice.chosen and not choice.mri_complete
    assert {c.series.series_uid for c in choice.ambiguous["adc"]} == {series["0000/adc"].series_uid,
                                                                      series["0000/adc_second"].series_uid}
    assert choice.decisions[series["0000/adc"].key][0] == "ambiguous"
    assert choice.decisions[series["0000/t2_sagittal"].key][0] == "not used"


def test_adc_on_the_dwi_grid_wins(scan: ScanResult, series: dict[str, SeriesInfo]) -> None:
    patient = [s for s in scan.series if s.patient_key == "id:ProstateX-0000"]
    other_grid = dataclasses.replace(series["0000/adc_second"], rows=256, columns=168, pixel_spacing=(1.0, 1.0))
    patient = [other_grid if s is series["0000/adc_second"] else s for s in patient]
    choice, _ = _choose(patient)
    assert choice.chosen["adc"].series is series["0000/adc"]
    assert "on the chosen DWI's grid" in choice.decisions[series["0000/adc"].key][1]
    assert "not on the chosen DWI's grid" in choice.decisions[other_grid.key][1]


def test_highest_b_value_wins(scan: ScanResult, series: dict[str, SeriesInfo]) -> None:
    patient = [s for s in scan.series if s.patient_key == "id:ProstateX-0000"]
    b800 = dataclasses.replace(series["0000/dwi_b50_ge"], b_values=(800.0,), file_b_values=[800.0] * 19)
    patient = [b800 if s is series["0000/dwi_b50_ge"] else s for s in patient]
    choice, _ = _choose(patient)
    assert choice.chosen["dwi"].series is series["0000/dwi"]
    assert choice.decisions[b800.key][0] == "not chosen" and "highest b 800" in choice.decisions[b800.key][1]


def test_latest_complete_study_chosen(scan: ScanResult, series: dict[str, SeriesInfo]) -> None:
    patient = [s for s in scan.series if s.patient_key == "id:ProstateX-0001"]
    choice, _ = _choose(patient)
    assert {r: c.series.series_uid for r, c in choice.chosen.items()} == {
        r: series[f"0001/S2/{r}"].series_uid for r in ("t2", "dwi", "adc")}
    assert choice.study_notes == ["bpMRI: S2 chosen, the latest of 2 complete studies (S1, S2)"]
    assert choice.decisions[series["0001/S1/t2"].key] == ("other study", "study S1 not used (used: S2)")


def test_mapping_picks_the_older_study(tmp_path: Path, export: Export, scan: ScanResult,
                                       series: dict[str, SeriesInfo]) -> None:
    mapping = load_mapping(_mapping(tmp_path, {"mappings": {"t2w": {"SeriesInstanceUID": [export.uids["0001/S1/t2"]]}}}))
    patient = [dataclasses.replace(s, extra={"0020|000E": s.series_uid})
               for s in scan.series if s.patient_key == "id:ProstateX-0001"]
    choice, _ = _choose(patient, mapping)
    assert choice.chosen["t2"].series.series_uid == export.uids["0001/S1/t2"]
    assert choice.chosen["dwi"].series.series_uid == export.uids["0001/S1/dwi"]
    assert "named by the mapping" in choice.study_notes[0]


def test_missing_modality_reported(scan: ScanResult) -> None:
    patient = [s for s in scan.series if s.patient_key == "id:ProstateX-0001" and s.study_date == "20110708"
               and "ADC" not in s.image_type]
    choice, _ = _choose(patient)
    assert choice.missing == ["adc"] and choice.missing_detail["adc"] == "no series classified as adc"


def test_several_b_values_in_one_series_use_the_highest(series: dict[str, SeriesInfo]) -> None:
    """A Siemens trace series holding b=50 and b=1000 files: the DWI is its b=1000 files."""
    from osteomet.data.series_rules import candidate

    low, high = series["0000/dwi_b50_ge"], series["0000/dwi"]
    merged = dataclasses.replace(high, files=low.files + high.files, file_b_values=[50.0] * 19 + [1000.0] * 19,
                                 b_values=(50.0, 1000.0), headers={**low.headers, **high.headers})
    cand = candidate(merged, classify(merged, load_rules()))
    assert cand.usable and cand.files == high.files
    assert cand.note == "only its b=1000 files (19 of 38)"
    unknown = dataclasses.replace(merged, file_b_values=[None] * 19 + [1000.0] * 19)
    assert not candidate(unknown, classify(unknown, load_rules())).usable
