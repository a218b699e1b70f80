"""Benign look-alikes (bone islands, osteophytes) and the lesion-free share of synthetic CT cohorts."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from scipy import ndimage

from osteomet.data.manifest import read_manifest
from osteomet.data.synth.ct import (
    BONE_ISLAND,
    LOOKALIKE_COLUMNS,
    OSTEOPHYTE,
    TRABECULAR,
    VERTEBRA_IDS,
    CTSynthConfig,
    generate_ct_cohort,
    lesion_free_patients,
    render_ct_phantom,
)
from osteomet.data.synth.ct.lesions import _blob, _Lesion, _lesion_hu
from osteomet.data.synth.ct.lookalikes import island_fraction, osteophyte_chance, paint_bone_islands
from osteomet.data.synth.ct.render import lesion_free_draw

#: Many look-alikes on a small grid, with lesions: where look-alikes and lesions could collide.
CROWDED = CTSynthConfig(inplane_size=64, region="abdomen_pelvis", lesion_free_fraction=0.0, mean_lesions=5.0,
                        bone_islands_per_patient=4.0, osteophyte_fraction=1.0)
#: Islands large enough to measure at 3.9 mm pixels and 2 mm slices, no noise, no spurs.
ISLANDS = CTSynthConfig(inplane_size=128, region="abdomen_pelvis", slice_thickness_mm=2.0, noise_hu=0.0,
                        bone_islands_per_patient=4.0, bone_island_diameter_mm=(10.0, 12.0), osteophyte_fraction=0.0)


def _index(phantom, row) -> tuple[int, int, int]:
    """(z, y, x) voxel of a row's world centre."""
    world = np.array([row["centre_x_mm"], row["centre_y_mm"], row["centre_z_mm"]])
    return tuple(np.rint((world - np.array(phantom.origin)) / np.array(phantom.spacing)).astype(int)[::-1])


def test_defaults_turn_lookalikes_on_and_bad_ranges_are_refused():
    config = CTSynthConfig()
    assert config.bone_islands_per_patient > 0 and config.osteophyte_fraction > 0
    assert config.lesion_free_fraction == 0.4
    lo, hi = config.bone_island_diameter_mm
    assert (np.log(10) - np.log(lo)) / (np.log(hi) - np.log(lo)) >= 0.75  # log-uniform: most islands under 1 cm
    for bad in ((5.0, 2.0), (0.0, 4.0), (2.0, 60.0)):
        with pytest.raises(ValueError, match="bone_island_diameter_mm"):  # pydantic wraps the InputError
            CTSynthConfig(bone_island_diameter_mm=bad)


def test_lookalikes_are_deterministic_per_seed():
    a, b, c = (render_ct_phantom(seed, CROWDED) for seed in (7, 7, 8))
    assert a.lookalike_rows == b.lookalike_rows and np.array_equal(a.lookalikes, b.lookalikes)
    assert np.array_equal(a.ct, b.ct)
    assert a.lookalike_rows != c.lookalike_rows
    assert [r["lookalike_id"] for r in a.lookalike_rows] == list(range(1, len(a.lookalike_rows) + 1))
    assert all(set(r) == set(LOOKALIKE_COLUMNS) for r in a.lookalike_rows)


def test_lookalikes_lie_in_bone_and_never_in_the_lesion_labels():
    kinds, n_lesions = set(), 0
    for seed in range(4):
        p = render_ct_phantom(np.random.SeedSequence(300 + seed), CROWDED)
        marked = p.lookalikes > 0
        assert marked.any()
        assert np.all(p.bones[marked] > 0)
        assert not (marked & (p.lesions > 0)).any()
        assert np.all(np.isin(p.bones[p.lookalikes == OSTEOPHYTE], VERTEBRA_IDS))
        n_lesions += len(p.lesion_rows)
        for row in p.lookalike_rows:
            kinds.add(row["kind"])
            if row["kind"] == "osteophyte":
                assert row["bone_id"] in VERTEBRA_IDS and 1.5 <= row["size_mm"] <= 9.0
            else:
                assert row["bone_id"] in {25, 26, 69, 70, 75, 76, 77, 78} | set(range(27, 44))
                assert 2.0 <= row["size_mm"] <= 12.0 and 800 <= row["hu"] <= 1500
        # the lesion truth still matches its mask exactly (look-alikes are not lesions)
        assert int(p.lesions.sum()) == sum(r["n_voxels"] for r in p.lesion_rows)
    assert kinds == {"bone_island", "osteophyte"} and n_lesions >= 8


def test_bone_islands_are_cortex_dense_and_of_their_drawn_size_in_the_image():
    islands, mapped, volume = 0, 0, 0.0
    for seed in (1, 2):
        p = render_ct_phantom(seed, ISLANDS, lesion_free=True)
        voxel_mm3 = float(np.prod(p.spacing))
        trab = float(np.median(p.ct[(p.tissue == TRABECULAR) & (p.lookalikes == 0)]))
        for row in p.lookalike_rows:
            assert row["kind"] == "bone_island" and 10.0 <= row["size_mm"] <= 12.0
            z, y, x = _index(p, row)
            assert p.bones[z, y, x] == row["bone_id"]
            peak = float(p.ct[max(z - 1, 0):z + 2, max(y - 1, 0):y + 2, max(x - 1, 0):x + 2].max())
            # blur and partial volume take a little off the painted HU, never add to it
            assert trab + 0.6 * (row["hu"] - trab) <= peak <= row["hu"] + 60, (row, peak, trab)
            islands += 1
            volume += np.pi / 6 * row["size_mm"] ** 3
        mapped += int((p.lookalikes == BONE_ISLAND).sum()) * voxel_mm3
    assert islands >= 3
    assert 0.6 <= mapped / volume <= 1.5, (mapped, volume)  # voxels at least half filled ~ the islands' volume


def test_island_fraction_holds_the_ellipsoid_volume_with_a_sharp_edge():
    axis = np.arange(-12.0, 12.5, 1.0)
    X, Y, Z = axis[None, None, :], axis[None, :, None], axis[:, None, None]
    semi = np.array([5.0, 4.0, 3.0])
    rot, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(3, 3)))
    frac = island_fraction(X, Y, Z, np.array([0.3, -0.2, 0.1]), semi, rot, np.array([1.0, 1.0, 1.0]))
    assert frac.sum() == pytest.approx(4 / 3 * np.pi * semi.prod(), rel=0.05)
    full, edge = frac == 1, (frac > 0) & (frac < 1)
    assert full.sum() > 0.3 * frac.sum()
    ring = np.ones((3, 3, 3), bool)  # sharp: the partial voxels are one rim, between the solid core and the outside
    assert np.all(ndimage.binary_dilation(full, ring)[edge]) and np.all(ndimage.binary_dilation(frac == 0, ring)[edge])


def test_islands_are_homogeneous_and_metastases_are_not():
    """What lets a model tell them apart: an island's interior is flat (15 HU texture), a sclerotic nodule's varies."""
    shape = (30, 40, 40)
    bones = np.full(shape, 77, np.uint16)
    tissue = np.full(shape, TRABECULAR, np.uint8)
    hu = np.full(shape, 200.0, np.float32)
    axes = tuple(np.arange(n, dtype=float) for n in shape[::-1])  # 1 mm voxels: x, y, z
    config = CTSynthConfig(bone_islands_per_patient=8.0, bone_island_diameter_mm=(8.0, 10.0))
    depth = np.minimum.reduce(np.meshgrid(*(np.minimum(np.arange(n), n - 1 - np.arange(n)) + 0.5 for n in shape),
                                          indexing="ij")).astype(np.float32)  # to the faces of the block of bone
    share, rows = paint_bone_islands(hu, bones, tissue, depth, np.zeros(shape, bool), axes, 1, 1400.0, config,
                                     np.random.default_rng(3))
    assert len(rows) >= 3
    assert np.all(hu >= 200.0) and int((hu > 200).sum()) == int((share > 0).sum())  # painted where it falls only
    island_sd = []
    cross = ndimage.generate_binary_structure(3, 1)
    for row in rows:
        z, y, x = (int(round(row[f"centre_{a}_mm"])) for a in "zyx")
        core = hu[z - 1:z + 2, y - 1:y + 2, x - 1:x + 2][cross]  # the centre and its 6 neighbours: well inside
        assert abs(float(core.mean()) - row["hu"]) < 25
        assert row["max_fraction"] == 1.0 and row["n_voxels"] == pytest.approx(np.pi / 6 * row["size_mm"] ** 3, rel=0.1)
        island_sd.append(float(core.std()))
    lesion_hu = np.full(shape, 200.0, np.float32)
    Z = (np.arange(shape[0]) - shape[0] / 2.0)[:, None, None]
    Y = (np.arange(shape[1]) - shape[1] / 2.0)[None, :, None]
    X = (np.arange(shape[2]) - shape[2] / 2.0)[None, None, :]
    rng = np.random.default_rng(4)
    mask = _blob(X, Y, Z, (0.0, 0.0, 0.0), 7.0, rng)
    everything = (slice(None), slice(None), slice(None))
    _lesion_hu(_Lesion(77, "focal", "sclerotic", everything, mask, 0.2), lesion_hu, tissue, 200.0, rng)
    lesion_sd = float(lesion_hu[ndimage.binary_erosion(mask)].std())
    assert lesion_sd > 2.5 * max(island_sd), (lesion_sd, island_sd)


def test_osteophytes_extend_their_vertebra_in_the_bone_map():
    """Same patient with and without spurs: the bone map only grows, by dense vertebra voxels on the outline."""
    on = render_ct_phantom(5, CTSynthConfig(region="abdomen_pelvis", osteophyte_fraction=1.0,
                                            bone_islands_per_patient=0.0), lesion_free=True)
    off = render_ct_phantom(5, CTSynthConfig(region="abdomen_pelvis", osteophyte_fraction=0.0,
                                             bone_islands_per_patient=0.0), lesion_free=True)
    assert on.ct.shape == off.ct.shape and on.origin == off.origin
    assert off.lookalike_rows == [] and not off.lookalikes.any()
    changed = on.bones != off.bones
    assert np.all(on.lookalikes[changed] == OSTEOPHYTE)
    grown = (off.bones == 0) & (on.bones > 0)
    assert grown.sum() >= 3 and grown.sum() == changed.sum()
    assert set(np.unique(on.bones[grown]).tolist()) <= {r["bone_id"] for r in on.lookalike_rows}
    for label in np.unique(on.bones[grown]):  # each new voxel grows from its own vertebra
        near = ndimage.binary_dilation(off.bones == label, np.ones((3, 3, 3), bool))
        assert np.all(near[grown & (on.bones == label)])
    assert np.median(on.ct[grown]) > np.median(off.ct[grown]) + 300  # dense bone where soft tissue was


def test_osteophytes_become_more_likely_with_age():
    assert osteophyte_chance(0.7, 71) == pytest.approx(0.7)
    assert osteophyte_chance(0.7, 55) < 0.5 < osteophyte_chance(0.7, 85)
    assert osteophyte_chance(0.0, 90) == 0.0 and osteophyte_chance(1.0, 50) == 1.0


def test_a_lesion_free_patient_has_empty_labels_and_the_same_lookalikes():
    """Lesion-free status removes the lesions only: the spurs are those of the same patient with lesions."""
    config = CTSynthConfig(region="abdomen_pelvis", bone_islands_per_patient=3.0, osteophyte_fraction=1.0)
    free = render_ct_phantom(12, config, lesion_free=True)
    sick = render_ct_phantom(12, config, lesion_free=False)
    assert free.info["lesion_free"] and not sick.info["lesion_free"]
    assert not free.lesions.any() and free.lesion_rows == []
    assert sick.lesions.any() and sick.lesion_rows
    assert {r["kind"] for r in free.lookalike_rows} == {"bone_island", "osteophyte"}
    spurs = [r for r in free.lookalike_rows if r["kind"] == "osteophyte"]
    assert spurs == [r for r in sick.lookalike_rows if r["kind"] == "osteophyte"]
    assert np.array_equal(free.bones, sick.bones)
    # the lesion-free CT still holds dense foci in bone: the islands that fill most of a voxel
    trab = float(np.median(free.ct[(free.tissue == TRABECULAR) & (free.lookalikes == 0)]))
    for row in free.lookalike_rows:
        if row["kind"] == "bone_island" and row["max_fraction"] >= 0.5:
            z, y, x = _index(free, row)
            assert free.ct[max(z - 1, 0):z + 2, y - 1:y + 2, x - 1:x + 2].max() > trab + 200


@pytest.mark.parametrize(("n", "fraction", "expected"), [(10, 0.4, 4), (8, 0.4, 3), (5, 0.3, 2), (4, 0.4, 2),
                                                        (1, 0.4, 0), (7, 0.0, 0), (3, 1.0, 3)])
def test_a_cohort_holds_exactly_its_share_of_lesion_free_patients(n, fraction, expected):
    children = np.random.SeedSequence(21).spawn(n)
    flags = lesion_free_patients(children, fraction)
    assert flags.sum() == expected
    draws = np.array([lesion_free_draw(np.random.default_rng(c)) for c in children])
    if 0 < expected < n:  # the patients with the lowest own draws
        assert draws[flags].max() < draws[~flags].min()


def test_cohort_writes_the_share_and_records_the_lookalikes(tmp_path: Path):
    config = CTSynthConfig(inplane_size=64, region="abdomen_pelvis", bone_islands_per_patient=2.0,
                           osteophyte_fraction=1.0)
    manifest_path = generate_ct_cohort(tmp_path, 5, seed=9, config=config)
    manifest = read_manifest(manifest_path, kind="ct")
    empty = [r.patient_id for r in manifest if not sitk.GetArrayFromImage(sitk.ReadImage(str(r.lesion_mask))).any()]
    assert len(empty) == 2  # round(5 * 0.4)
    truth = pd.read_csv(manifest_path.parent / "lesions_truth.csv")
    assert set(truth["patient_id"]) == set(manifest.patient_ids) - set(empty)
    record = json.loads((manifest_path.parent / "synth.json").read_text(encoding="utf-8"))
    rows = pd.DataFrame(record["lookalikes"])
    assert set(rows.columns) == {"patient_id", *LOOKALIKE_COLUMNS}  # synth.json sorts its keys
    assert set(rows["patient_id"]) <= set(manifest.patient_ids)
    assert set(empty) & set(rows["patient_id"])  # lesion-free patients carry look-alikes too
    children = np.random.SeedSequence(9).spawn(5)
    flags = lesion_free_patients(children, 0.4)
    first = render_ct_phantom(np.random.default_rng(children[0]), config, lesion_free=bool(flags[0]))
    assert rows[rows["patient_id"] == "CT001"].drop(columns="patient_id").to_dict("records") == first.lookalike_rows
