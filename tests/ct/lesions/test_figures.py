"""Cohort lesion figures: the outlines sit where the masks are, in the colour of what each lesion is."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from PIL import Image

from osteomet.ct.lesions.figures import (
    COLOURS,
    bone_counts,
    bone_map_figure,
    choose_targets,
    cohort_lesions,
    load_patient,
    patient_figure,
    render,
    write_lesion_figures,
)
from osteomet.layout import RunLayout, open_run_dir

SPACING = (2.0, 2.0, 3.0)  # x, y, z mm
SHAPE = (14, 80, 80)  # z, y, x
L3, HIP_LEFT = 29, 77
# (z, y, x) boxes
FOUND = np.s_[3:6, 28:36, 20:28]  # reference lesion in L3, found by the segmenter
MISSED = np.s_[8:11, 40:48, 56:64]  # reference lesion in the left hip, missed
FALSE = np.s_[3:6, 24:30, 62:68]  # a prediction in the left hip with no reference lesion


def _image(array: np.ndarray, path: Path, direction: tuple[float, ...] = (1, 0, 0, 0, 1, 0, 0, 0, 1)) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING)
    image.SetOrigin((-80.0, -80.0, -20.0))
    image.SetDirection(direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def build_lesion_run(path: Path, direction: tuple[float, ...] = (1, 0, 0, 0, 1, 0, 0, 0, 1)) -> Path:
    """A run folder with one test patient (two reference lesions, one found, one false positive) and one
    training patient, analysed by the real per-lesion stage (the report's tests use it too)."""
    from osteomet.ct.lesions.cohort import LesionSettings
    from osteomet.pipeline.ct_lesions import analyse_lesion_cohort

    root = open_run_dir(path, kind="test")
    layout = RunLayout(root)
    images = root / "images"
    masks = layout.ct_segmentation / "predictions" / "unet" / "masks"
    rows = []
    for pid, split in (("P1", "test"), ("P2", "train")):
        bones = np.zeros(SHAPE, np.uint8)
        bones[:, 20:60, 14:44] = L3
        bones[:, 20:60, 50:75] = HIP_LEFT
        hu = np.where(bones > 0, 300.0, -50.0).astype(np.float32)
        reference = np.zeros(SHAPE, np.uint8)
        predicted = np.zeros(SHAPE, np.uint8)
        if pid == "P1":
            reference[FOUND] = reference[MISSED] = 1
            predicted[FOUND] = 1
            predicted[FALSE] = 1
            hu[reference > 0] = 900.0
        rows.append({"patient_id": pid, "ct": str(_image(hu, images / f"{pid}_ct.nii.gz", direction)),
                     "lesion_mask": str(_image(reference, images / f"{pid}_lesions.nii.gz", direction)),
                     "bone_map": str(_image(bones, images / f"{pid}_bones.nii.gz", direction)), "split": split})
        _image(predicted, masks / f"{pid}.nii.gz", direction)
    manifest = layout.ct_split / "manifest.csv"
    manifest.parent.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(manifest, index=False)
    analyse_lesion_cohort(manifest, layout.ct_lesions_of("unet"), settings=LesionSettings(n_resamples=20),
                          predictions=masks)
    return root


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_lesion_run(tmp_path_factory.mktemp("figures") / "run")


def colour_pixels(pixels: np.ndarray, colour: str, tolerance: int = 45) -> int:
    """How many pixels of an RGB(A) array are within ``tolerance`` of ``colour`` (#rrggbb) in every channel."""
    return int((np.abs(pixels[..., :3].astype(int) - _rgb(colour)).max(axis=-1) < tolerance).sum())


def _rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])


def _count(pixels: np.ndarray, ax, box: tuple[slice, slice], colour: str, margin: int = 2) -> int:
    """Pixels of ``colour`` drawn within ``margin`` voxels of a (rows, cols) box of a panel (mm coordinates)."""
    rows, cols = box
    sx, sy = SPACING[0], SPACING[1]
    corners = ax.transData.transform([((cols.start - margin) * sx, (rows.start - margin) * sy),
                                      ((cols.stop + margin) * sx, (rows.stop + margin) * sy)])
    height = pixels.shape[0]
    c0, c1 = sorted(int(round(c)) for c in corners[:, 0])
    r0, r1 = sorted(int(round(height - r)) for r in corners[:, 1])
    region = pixels[r0:r1, c0:c1, :3].astype(int)
    return int((np.abs(region - _rgb(colour)).max(axis=-1) < 45).sum())


def _panel(fig, n_rows: int, row: int, column: int):
    """Axes of a panel: the locator comes first, then the panels row by row (reference, then each segmenter)."""
    return fig.axes[1 + row * 2 + column]


def test_patient_figure_outlines_each_lesion_in_its_colour_where_its_mask_is(run: Path) -> None:
    cohort = cohort_lesions(RunLayout(run))
    assert cohort is not None and list(cohort.segmenters) == ["unet"] and cohort.test_ids() == ["P1"]
    images = load_patient(cohort, "P1")
    targets = choose_targets(cohort, images)
    # a slice through each reference lesion's centre and through the false positive
    assert sorted(t.z for t in targets) == [4, 4, 9] and sum("false positive" in t.label for t in targets) == 1
    fig = patient_figure(cohort, images)
    pixels = render(fig)
    found_row = next(i for i, t in enumerate(targets) if t.label.startswith("reference") and t.z == 4)
    missed_row = next(i for i, t in enumerate(targets) if t.z == 9)
    false_row = next(i for i, t in enumerate(targets) if "false positive" in t.label)
    box = lambda s: (s[1], s[2])  # noqa: E731 (rows, cols of a (z, y, x) box)

    reference_panel, unet_panel = _panel(fig, 3, found_row, 0), _panel(fig, 3, found_row, 1)
    assert _count(pixels, reference_panel, box(FOUND), COLOURS["reference"]) > 20
    assert _count(pixels, unet_panel, box(FOUND), COLOURS["true_positive"]) > 20
    assert _count(pixels, unet_panel, box(FOUND), COLOURS["false_positive"]) == 0
    # the false positive's own row (it lies outside the first row's field of view): red, nothing in the reference
    false_panel = _panel(fig, 3, false_row, 1)
    assert _count(pixels, false_panel, box(FALSE), COLOURS["false_positive"]) > 20
    assert _count(pixels, false_panel, box(FALSE), COLOURS["true_positive"]) == 0
    assert _count(pixels, _panel(fig, 3, false_row, 0), box(FALSE), COLOURS["reference"]) == 0
    missed_panel = _panel(fig, 3, missed_row, 1)
    assert _count(pixels, missed_panel, box(MISSED), COLOURS["missed"]) > 20
    assert _count(pixels, missed_panel, box(MISSED), COLOURS["true_positive"]) == 0
    # the outline is on the lesion, not elsewhere in the panel: away from it no outline colour at all
    empty = (np.s_[48:58], np.s_[2:12])
    for colour in COLOURS.values():
        assert _count(pixels, unet_panel, empty, colour, margin=0) == 0
    # the slice is shown in the bone window: soft tissue mid-grey, the bone and lesion brighter
    sx, sy = SPACING[0], SPACING[1]
    dx, dy = reference_panel.transData.transform(((8 + 0.5) * sx, (55 + 0.5) * sy))  # soft tissue (-50 HU)
    soft = pixels[int(round(pixels.shape[0] - dy)), int(round(dx)), :3].astype(int)
    dx, dy = reference_panel.transData.transform(((24 + 0.5) * sx, (32 + 0.5) * sy))  # lesion (900 HU)
    lesion = pixels[int(round(pixels.shape[0] - dy)), int(round(dx)), :3].astype(int)
    expected = (-50 - (400 - 900)) / 1800 * 255
    assert abs(soft[0] - expected) < 8 and soft[0] == soft[1] == soft[2] and lesion[0] > soft[0] + 60


def test_bone_map_marks_found_missed_and_false_positive_lesions_and_counts_them_by_bone(run: Path) -> None:
    cohort = cohort_lesions(RunLayout(run))
    fig = bone_map_figure(cohort, "unet", ["P1"])
    pixels = render(fig)
    ax = fig.axes[0]
    height = pixels.shape[0]

    def near(x_vox: float, z_vox: float, colour: str) -> int:
        # coronal view: columns are x, rows are z with the head up (z grows upwards in the extent)
        dx, dy = ax.transData.transform(((x_vox + 0.5) * SPACING[0], (z_vox + 0.5) * SPACING[2]))
        r, c = int(round(height - dy)), int(round(dx))
        region = pixels[r - 6:r + 7, c - 6:c + 7, :3].astype(int)
        return int((np.abs(region - _rgb(colour)).max(axis=-1) < 45).sum())

    assert near(23.5, 4, COLOURS["true_positive"]) > 5  # found: green ring
    assert near(59.5, 9, COLOURS["missed"]) > 5  # missed: yellow cross
    assert near(64.5, 4, COLOURS["false_positive"]) > 5  # false positive: red triangle
    assert near(59.5, 9, COLOURS["true_positive"]) == 0
    counts = bone_counts(cohort, ["P1"]).set_index("bone_name")
    assert counts.loc["vertebrae_L3", ["reference", "found", "missed", "false_positive"]].tolist() == [1, 1, 0, 0]
    assert counts.loc["hip_left", ["reference", "found", "missed", "false_positive"]].tolist() == [1, 0, 1, 1]
    assert list(counts.index) == ["vertebrae_L3", "hip_left"]  # spine before pelvis, as the body goes


def test_written_figures_are_pngs_with_captions(run: Path, tmp_path: Path) -> None:
    paths = write_lesion_figures(RunLayout(run), tmp_path / "figures")
    assert len(paths) == 3  # the test patient, the bone map, the chart by bone
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) > 100
    index = json.loads((tmp_path / "figures" / "figures.json").read_text(encoding="utf-8"))["figures"]
    assert [e["file"] for e in index] == [p.name for p in paths] and "P1" in index[0]["caption"]
    assert pd.read_csv(tmp_path / "figures" / "lesions_by_bone.csv")["false_positive"].sum() == 1


def test_a_mask_that_no_longer_matches_its_table_is_not_coloured(run: Path, tmp_path: Path) -> None:
    """Lesion k of the mask is row k of the table; a changed mask must not borrow the old rows' colours."""
    from osteomet.ct.lesions.figures import lesion_classes

    cohort = cohort_lesions(RunLayout(run))
    table = cohort.segmenters["unet"].lesions
    table = table[table["patient_id"] == "P1"]
    mask = np.zeros(SHAPE, np.uint8)
    mask[FOUND] = 1
    classes = lesion_classes(sitk.GetImageFromArray(mask), table, "true_positive")
    assert classes is None
    mask[FALSE] = 1
    classes = lesion_classes(sitk.GetImageFromArray(mask), table, "true_positive")
    assert (classes[FOUND] == 1).all() and (classes[FALSE] == 2).all() and classes.sum() == mask[FOUND].sum() \
        + 2 * mask[FALSE].sum()


def test_a_scan_stored_right_to_left_is_drawn_in_radiological_orientation(tmp_path: Path) -> None:
    """A NIfTI whose rows and columns run the other way (RAS-like): drawn as LPS, each lesion where it is."""
    run = build_lesion_run(tmp_path / "run", direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1))
    cohort = cohort_lesions(RunLayout(run))
    images = load_patient(cohort, "P1")
    flip = lambda s: np.s_[s[0], 80 - s[1].stop:80 - s[1].start, 80 - s[2].stop:80 - s[2].start]  # noqa: E731
    assert (images.predicted["unet"][flip(FOUND)] == 1).all() and (images.predicted["unet"][flip(FALSE)] == 2).all()
    assert (images.found["unet"][flip(MISSED)] == 2).all()
    targets = choose_targets(cohort, images)
    found_row = next(i for i, t in enumerate(targets) if t.label.startswith("reference") and t.z == 4)
    assert (targets[found_row].y, targets[found_row].x) in {(80 - 32, 80 - 24), (80 - 33, 80 - 25)}  # its centre
    fig = patient_figure(cohort, images)
    pixels = render(fig)
    unet_panel = _panel(fig, 3, found_row, 1)
    assert _count(pixels, unet_panel, flip(FOUND)[1:], COLOURS["true_positive"]) > 20
    assert _count(pixels, unet_panel, FOUND[1:], COLOURS["true_positive"]) == 0  # not where the file's array has it
