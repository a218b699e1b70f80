"""Grad-CAM on an easy case: a network trained to tell bright from dark tumours looks at the tumour."""

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from osteomet.data.geometry import Geometry
from osteomet.data.images import read_image
from osteomet.mri.classifier.config import ResNetConfig, load_classifier_config
from osteomet.mri.classifier.gradcam import gradcam_patient
from osteomet.mri.classifier.model import build_resnet
from osteomet.mri.classifier.predict import load_model
from osteomet.mri.classifier.train import RunSpec, train_run
from osteomet.utils.files import write_json_atomic

ROI = Geometry((32, 32, 16), (1.0, 1.0, 3.0), (-16.0, -16.0, -24.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
# T2 grid whose voxel centres include every ROI voxel centre (so values can be compared exactly).
T2 = Geometry((96, 96, 24), (0.5, 0.5, 3.0), (-24.0, -24.0, -33.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
CONFIG = load_classifier_config("tiny").model_copy(update={
    "resnet": ResNetConfig(widen_factor=0.25, conv1_t_size=3, conv1_t_stride=1, no_max_pool=True),
    "max_epochs": 6, "patience": 6, "batch_size": 8, "rotate90_prob": 0.0, "intensity_prob": 0.0})


def _write_case(root: Path, pid: str, bright: bool, rng: np.random.Generator) -> None:
    """A case folder laid out as `osteomet preprocess mri` writes it: a blob 2.5 SD above or below the background."""
    z, y, x = np.ogrid[:16, :32, :32]
    cz, cy, cx = rng.integers(4, 12), rng.integers(8, 24), rng.integers(8, 24)
    mask = ((z - cz) / 2.5) ** 2 + ((y - cy) / 5.0) ** 2 + ((x - cx) / 5.0) ** 2 <= 1.0
    image = rng.normal(0.0, 0.5, size=(3, 16, 32, 32)).astype(np.float32)
    image[:, mask] += 2.5 if bright else -2.5
    folder = root / "cases" / pid
    folder.mkdir(parents=True)
    np.save(folder / "roi_image.npy", image, allow_pickle=False)
    np.save(folder / "roi_mask.npy", mask.astype(np.uint8), allow_pickle=False)
    write_json_atomic(folder / "transform.json", {"patient_id": pid, "roi_geometry": ROI.to_dict(),
                                                  "t2_geometry": T2.to_dict(), "mask": None})


@pytest.fixture(scope="module")
def easy(tmp_path_factory):
    root = tmp_path_factory.mktemp("easy")
    rng = np.random.default_rng(0)
    labels = {f"P{i:02d}": i % 2 for i in range(40)}
    for pid, label in labels.items():
        _write_case(root / "pre", pid, bool(label), rng)
    ids = list(labels)
    result = train_run(root / "pre", root / "run", CONFIG, RunSpec(10, "adam", 1e-3),
                       train_labels={p: labels[p] for p in ids[:28]}, val_labels={p: labels[p] for p in ids[28:]},
                       device="cpu")
    assert result.val_auc == 1.0  # the case is easy: the network separates bright from dark
    return root, labels, ids[28:]


def test_map_is_higher_inside_the_tumour(easy, tmp_path):
    root, labels, held_out = easy
    network, _, _, device = load_model(root / "run", "cpu")
    for pid in [p for p in held_out if labels[p] == 1]:
        row = gradcam_patient(network, root / "pre", pid, tmp_path, device)
        heat = sitk.GetArrayFromImage(read_image(row["roi_nifti"]))
        mask = np.load(root / "pre" / "cases" / pid / "roi_mask.npy") > 0
        assert not row["cam_empty"] and heat.std() > 0.05 and heat.max() == pytest.approx(1.0)
        assert heat[mask].mean() > heat[~mask].mean() + 0.1, pid
        assert row["mean_in_tumour"] == pytest.approx(heat[mask].mean(), rel=1e-5)
        assert Path(row["png"]).stat().st_size > 1000


def test_map_in_t2_geometry_matches_the_roi_map(easy, tmp_path):
    root, labels, held_out = easy
    network, _, _, device = load_model(root / "run", "cpu")
    pid = next(p for p in held_out if labels[p] == 1)
    row = gradcam_patient(network, root / "pre", pid, tmp_path, device)
    on_roi, on_t2 = read_image(row["roi_nifti"]), read_image(row["t2_nifti"])
    assert Geometry.of(on_roi) == ROI and Geometry.of(on_t2) == T2
    roi_values, t2_values = sitk.GetArrayFromImage(on_roi), sitk.GetArrayFromImage(on_t2)
    rng = np.random.default_rng(1)
    for z, y, x in zip(rng.integers(0, 16, 50), rng.integers(0, 32, 50), rng.integers(0, 32, 50)):
        world = on_roi.TransformIndexToPhysicalPoint((int(x), int(y), int(z)))
        i, j, k = on_t2.TransformPhysicalPointToIndex(world)
        assert t2_values[k, j, i] == pytest.approx(roi_values[z, y, x], abs=1e-5)
    assert t2_values[:, :4, :].max() == 0.0 and t2_values[:, :, -4:].max() == 0.0  # outside the ROI


def test_a_map_with_no_positive_region_says_it_is_empty(easy, tmp_path):
    """With the last layer zeroed no voxel raises the logit: the map is all zero and flagged, not scaled up."""
    root, _, held_out = easy
    network = build_resnet(10, CONFIG.resnet).eval()
    with torch.no_grad():
        network.fc.weight.zero_()
    row = gradcam_patient(network, root / "pre", held_out[0], tmp_path, torch.device("cpu"))
    assert row["cam_empty"] and Path(row["png"]).exists()
    assert sitk.GetArrayFromImage(read_image(row["roi_nifti"])).max() == 0.0


def test_map_is_zero_and_uncoloured_where_the_crop_runs_off_the_scan(tmp_path, monkeypatch):
    """A tumour at the edge of the field of view: the ROI's left half lies outside the T2 and is padding.

    The network's map is made hottest in the padding (as the padding's edge makes real maps), so
    without the fix the padding would take the colour scale's top and the tumour half of it.
    """
    import osteomet.mri.classifier.gradcam as gradcam
    from osteomet.data.geometry import resample_to
    from osteomet.data.grids import array_on
    from osteomet.utils.figures import pyplot

    # T2 from x = 0 mm: the ROI's voxels x = -16..-1 mm (columns 0..15) have no scan under them
    t2 = Geometry((32, 64, 24), (1.0, 0.5, 2.0), (0.0, -16.0, -24.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    scanned = sitk.GetArrayFromImage(resample_to(array_on(t2, np.ones((24, 64, 32), np.float32)), ROI)) > 0
    assert not scanned[:, :, :16].any() and scanned[:, :, 16:].all()  # what the crop pads, made as the crop does
    rng = np.random.default_rng(3)
    image = rng.normal(0.0, 1.0, size=(3, 16, 32, 32)).astype(np.float32)
    image[:, ~scanned] = 0.0
    z, y, x = np.ogrid[:16, :32, :32]
    mask = ((z - 8) / 2.5) ** 2 + ((y - 16) / 4.0) ** 2 + ((x - 22) / 4.0) ** 2 <= 1.0
    folder = tmp_path / "pre" / "cases" / "EDGE"
    folder.mkdir(parents=True)
    np.save(folder / "roi_image.npy", image, allow_pickle=False)
    np.save(folder / "roi_mask.npy", mask.astype(np.uint8), allow_pickle=False)
    write_json_atomic(folder / "transform.json", {"patient_id": "EDGE", "roi_geometry": ROI.to_dict(),
                                                  "t2_geometry": t2.to_dict(), "mask": None})
    raw = np.where(scanned, 0.5 * np.exp(-((x - 22) ** 2 + (y - 16) ** 2) / 50.0), 2.0).astype(np.float32)
    monkeypatch.setattr(gradcam, "gradcam_volume", lambda network, roi, device: (raw, 0.8))

    assert np.array_equal(gradcam.roi_inside(json_of(folder)), scanned)
    row = gradcam.gradcam_patient(None, tmp_path / "pre", "EDGE", tmp_path / "out", torch.device("cpu"))
    heat = sitk.GetArrayFromImage(read_image(row["roi_nifti"]))
    assert heat[~scanned].max() == 0.0  # no heat in the padding
    assert heat[scanned].max() == pytest.approx(1.0)  # the colour scale spans the scanned voxels
    assert heat[mask].mean() > 0.5 and not row["cam_empty"]
    assert row["mean_outside"] == pytest.approx(heat[scanned & ~mask].mean(), rel=1e-5)  # padding is no tissue
    assert Path(row["png"]).stat().st_size > 1000

    fig = gradcam.overlay_figure(image[1], heat, mask, (8, 16, 22), ROI.spacing, "edge", scanned)
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)
    axial = fig.axes[0]

    def colour_at(col: float, row_: float) -> np.ndarray:
        dx, dy = axial.transData.transform((col, row_))
        return pixels[int(round(pixels.shape[0] - dy)), int(round(dx))]

    for col, row_ in ((4, 16), (10, 5), (14, 28)):  # padding: black, no map colour
        assert colour_at(col, row_).max() < 20, colour_at(col, row_)
    tumour = colour_at(22, 16)  # the map's peak: coloured (jet red over the T2), not grey
    assert tumour[0] - tumour[2] > 30, tumour
    pyplot().close(fig)


def json_of(folder: Path) -> dict:
    import json

    return json.loads((folder / "transform.json").read_text(encoding="utf-8"))
