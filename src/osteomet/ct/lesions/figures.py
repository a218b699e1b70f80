"""Figures of a CT cohort's lesions: what a radiologist checks a segmenter's lesion calls with.

* :func:`patient_figure`: one test patient, a row per chosen axial slice (through each reference
  lesion's centre and each false positive's), the reference outlined in one column and each
  segmenter's lesions in the next ones: matched predictions (true positives) green, false
  positives red, reference lesions the segmenter missed yellow, the reference it found cyan
  (dashed). Bone window (:data:`osteomet.ct.lesions.overlays.BONE_WINDOW`), each panel zoomed
  to :data:`FOV_MM` around the lesion, a coronal locator with the slices marked on the left.
* :func:`bone_map_figure`: where one segmenter's lesions were found, missed and falsely called,
  on a coronal projection of each test patient's bone map (no registration between patients is
  needed, each patient is its own map); :func:`bone_counts` and :func:`bone_chart` count them by
  bone over every test patient.

Everything is read from the files a run already holds (the CT study manifest, the segmenters'
predicted masks and the per-lesion tables of ``ct/lesions``): nothing is re-run. Lesions are
found in the masks by the analysis's own labelling (:func:`osteomet.ct.lesions.labels.label_lesions`),
so lesion ``k`` of a mask is row ``k`` of its table; a mask whose lesions no longer match its
table is drawn without colours rather than with wrong ones. Slices are oriented to LPS and
shown in radiological convention (patient right on the image left, anterior up).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from osteomet.layout import LESIONS, MANIFEST, REFERENCE_LESIONS, STAGE_RECORD, RunLayout

_logger = logging.getLogger(__name__)

#: Outline colours: what each one means is in :data:`LEGEND`.
COLOURS = {"reference": "#00d8ff", "true_positive": "#2bd62b", "false_positive": "#ff2b2b", "missed": "#ffd400"}
LEGEND = {"reference": "reference lesion (found by the segmenter when dashed)",
          "true_positive": "true positive (prediction matched to a reference lesion)",
          "false_positive": "false positive (prediction without a reference lesion)",
          "missed": "missed reference lesion (false negative)"}
#: Side (mm) of the square each axial panel shows around its lesion: a vertebral body and its neighbours.
FOV_MM = 120.0
#: Test patients shown, rows (slices) per patient, patients on the bone-map figure.
MAX_PATIENTS = 4
MAX_ROWS = 4
MAX_MAP_PATIENTS = 8
FIGURES = "figures"  # ct/lesions/figures/: the PNGs of write_lesion_figures
FIGURE_INDEX = "figures.json"  # their captions, in order
BONE_COUNTS = "lesions_by_bone.csv"  # bone_counts() beside them


def _flag(values: pd.Series) -> np.ndarray:
    """Booleans from a CSV column (True/False, 1/0, text): what pandas reads back varies with the rows."""
    return values.astype(str).str.strip().str.lower().isin(["true", "1", "1.0", "yes"]).to_numpy()


# ---- where a run's files are ----------------------------------------------------------------------------

@dataclass
class SegmenterLesions:
    """One segmenter's per-lesion tables and the folder of its predicted masks (``<patient_id>.nii.gz``)."""

    name: str
    lesions: pd.DataFrame
    reference: pd.DataFrame
    masks: Path | None


@dataclass
class CohortLesions:
    """The CT study's patients (paths resolved) and every segmenter's lesion calls."""

    patients: pd.DataFrame
    segmenters: dict[str, SegmenterLesions] = field(default_factory=dict)

    def test_ids(self) -> list[str]:
        """The held-out patients (split ``test``, else ``external``); every patient when the run has no split."""
        return self._held_out()[1]

    def scope(self) -> str:
        """Who :meth:`test_ids` are, for captions: "test patients", "external patients" or "patients"."""
        return self._held_out()[0]

    def _held_out(self) -> tuple[str, list[str]]:
        split = self.patients.get("split")
        if split is not None:
            for name in ("test", "external"):
                ids = self.patients.loc[split.astype(str) == name, "patient_id"].tolist()
                if ids:
                    return f"{name} patients", ids
        return "patients", self.patients["patient_id"].tolist()

    def split_of(self, patient_id: str) -> str:
        if "split" not in self.patients:
            return ""
        values = self.patients.loc[self.patients["patient_id"] == patient_id, "split"]
        return str(values.iloc[0]) if len(values) and str(values.iloc[0]) not in ("", "nan") else ""

    def record(self, patient_id: str) -> dict[str, Any]:
        return self.patients.loc[self.patients["patient_id"] == patient_id].iloc[0].to_dict()


def _stage_input(folder: Path, key: str, bases: list[Path]) -> Path | None:
    """A path the stage recorded in its ``stage.json`` (absolute, or relative to where it was run)."""
    from osteomet.utils.files import read_json

    record = read_json(folder / STAGE_RECORD) or {}
    value = (record.get("inputs") or {}).get(key)
    if not isinstance(value, str) or not value:
        return None
    path = Path(value)
    candidates = [path] if path.is_absolute() else [*(b / path for b in bases), Path.cwd() / path]
    return next((p for p in candidates if p.exists()), None)


def _read_table(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path, dtype={"patient_id": str})
    except (OSError, ValueError, pd.errors.ParserError):
        return None


def read_study_manifest(path: Path) -> pd.DataFrame | None:
    """The manifest's patients with their image paths made absolute (relative ones are relative to the manifest)."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError):
        return None
    if not {"patient_id", "ct"} <= set(frame.columns):
        return None
    for column in ("ct", "lesion_mask", "bone_map"):
        if column not in frame:
            frame[column] = None
            continue
        frame[column] = [None if not isinstance(v, str) or not v.strip() else
                         str(Path(v) if Path(v).is_absolute() else (path.parent / v).resolve()) for v in frame[column]]
    frame["patient_id"] = frame["patient_id"].astype(str)
    return frame


def cohort_lesions(layout: RunLayout) -> CohortLesions | None:
    """The run's CT lesion files, or None when it has no evaluated per-lesion analysis or no manifest."""
    folders = layout.ct_lesion_folders()
    bases = [layout.root.parent, layout.root]
    manifest = layout.ct_split / MANIFEST
    segmenters: dict[str, SegmenterLesions] = {}
    for name, folder in folders.items():
        lesions, reference = _read_table(folder / LESIONS), _read_table(folder / REFERENCE_LESIONS)
        if lesions is None or reference is None or "detected" not in reference or "false_positive" not in lesions:
            continue
        masks = layout.ct_segmentation / "predictions" / name / "masks"
        if not masks.is_dir():
            masks = _stage_input(folder, "predictions", bases)
        segmenters[name] = SegmenterLesions(name, lesions, reference, masks if masks and masks.is_dir() else None)
        if not manifest.is_file():
            manifest = _stage_input(folder, "manifest", bases) or manifest
    patients = read_study_manifest(manifest) if manifest.is_file() else None
    if not segmenters or patients is None:
        return None
    return CohortLesions(patients, segmenters)


# ---- one patient's images --------------------------------------------------------------------------------

@dataclass
class PatientImages:
    """One patient's CT and masks on one LPS-oriented grid (arrays z, y, x), and the lesion class of every voxel."""

    patient_id: str
    shape: tuple[int, int, int]  # z, y, x
    spacing: tuple[float, float, float]  # x, y, z (mm)
    grid: Any  # the oriented sitk image: world mm -> voxel index
    hu: np.ndarray | None = None
    reference: np.ndarray | None = None  # 1 where a reference lesion is
    bones: np.ndarray | None = None  # TotalSegmentator labels
    found: dict[str, np.ndarray] = field(default_factory=dict)  # per segmenter: reference 1 found, 2 missed
    predicted: dict[str, np.ndarray] = field(default_factory=dict)  # per segmenter: 1 true, 2 false positive
    projection: tuple[np.ndarray, str] | None = None  # the coronal view, once made (see :meth:`slim`)

    def slim(self) -> PatientImages:
        """Only what the bone-map figure needs (grid and coronal view): a whole-body CT's volumes are large."""
        return PatientImages(self.patient_id, self.shape, self.spacing, self.grid, projection=_coronal(self))

    def index(self, row: Any) -> tuple[int, int, int]:
        """Voxel (z, y, x) of a lesion table row's centre (from its world position, so any orientation works)."""
        point = (float(row["centroid_x_mm"]), float(row["centroid_y_mm"]), float(row["centroid_z_mm"]))
        x, y, z = self.grid.TransformPhysicalPointToContinuousIndex(point)
        return tuple(int(np.clip(round(v), 0, n - 1)) for v, n in zip((z, y, x), self.shape))  # type: ignore[return-value]


def lesion_classes(mask: Any, table: pd.DataFrame, column: str) -> np.ndarray | None:
    """uint8 volume: 1 on lesions whose ``column`` is true, 2 on the others; None when the mask and table disagree."""
    import SimpleITK as sitk

    from osteomet.ct.lesions.labels import label_lesions

    labels = label_lesions(sitk.GetArrayViewFromImage(mask) != 0)
    table = table.sort_values("lesion_id")
    if labels.n != len(table) or (len(table) and table["lesion_id"].tolist() != list(range(1, labels.n + 1))):
        return None
    out = np.zeros(labels.shape, np.uint8)
    for flag, box, piece in zip(_flag(table[column]) if len(table) else [], labels.boxes, labels.masks):
        out[box][piece] = 1 if flag else 2
    return out


def _lps(array: np.ndarray, reference: Any) -> np.ndarray:
    """A (z, y, x) array on ``reference``'s grid, reoriented as :func:`_oriented` reorients the CT."""
    import SimpleITK as sitk

    if np.allclose(reference.GetDirection(), np.eye(3).ravel()):
        return array  # already LPS (as a DICOM-derived grid usually is): no copy of a whole-body volume
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return sitk.GetArrayFromImage(sitk.DICOMOrient(image, "LPS"))


def _oriented(image: Any) -> tuple[Any, Any, tuple[int, int, int], tuple[float, float, float]]:
    """The image in LPS, its geometry as a one-voxel image, its (z, y, x) shape and (x, y, z) spacing."""
    import SimpleITK as sitk

    oriented = sitk.DICOMOrient(image, "LPS")
    size = oriented.GetSize()
    grid = sitk.Image([1, 1, 1], sitk.sitkUInt8)  # the geometry alone (world mm -> index), not a copy of the voxels
    grid.SetOrigin(oriented.GetOrigin())
    grid.SetSpacing(oriented.GetSpacing())
    grid.SetDirection(oriented.GetDirection())
    return oriented, grid, (int(size[2]), int(size[1]), int(size[0])), tuple(float(s) for s in oriented.GetSpacing())


def load_patient(cohort: CohortLesions, patient_id: str) -> PatientImages:
    """Read one patient's CT, reference, bone map and each segmenter's mask, classified from the lesion tables."""
    import SimpleITK as sitk

    from osteomet.data.images import read_image
    from osteomet.data.label_masks import read_label_map, read_mask

    record = cohort.record(patient_id)
    uid = record.get("ct_series_uid")
    image = read_image(record["ct"], series_uid=uid if isinstance(uid, str) and uid else None)
    oriented, grid, shape, spacing = _oriented(image)
    out = PatientImages(patient_id, shape, spacing, grid, hu=sitk.GetArrayFromImage(oriented))
    del oriented
    if record.get("bone_map"):
        out.bones = _lps(sitk.GetArrayFromImage(read_label_map(record["bone_map"], reference=image)), image)
    reference = (read_mask(record["lesion_mask"], reference=image, allow_empty=True)
                 if record.get("lesion_mask") else None)
    if reference is not None:
        out.reference = _lps(sitk.GetArrayFromImage(reference), image)
    for name, seg in cohort.segmenters.items():
        if reference is not None:
            classes = lesion_classes(reference, seg.reference[seg.reference["patient_id"] == patient_id], "detected")
            if classes is not None:
                out.found[name] = _lps(classes, image)
        path = seg.masks / f"{patient_id}.nii.gz" if seg.masks is not None else None
        if path is not None and path.is_file():
            mask = read_mask(path, reference=image, allow_empty=True)
            classes = lesion_classes(mask, seg.lesions[seg.lesions["patient_id"] == patient_id], "true_positive")
            if classes is not None:
                out.predicted[name] = _lps(classes, image)
            else:
                _logger.warning("%s: lesions no longer match %s's lesion table; not drawn", path, name)
    return out


def load_bone_map(cohort: CohortLesions, patient_id: str) -> PatientImages:
    """Only the bone map (its grid is the CT's, which the per-lesion analysis checked): what the bone-map figure needs."""
    import SimpleITK as sitk

    from osteomet.data.label_masks import read_label_map

    bones = read_label_map(cohort.record(patient_id)["bone_map"])
    oriented, grid, shape, spacing = _oriented(bones)
    return PatientImages(patient_id, shape, spacing, grid, bones=sitk.GetArrayFromImage(oriented))


# ---- which patients and slices ---------------------------------------------------------------------------

def choose_patients(cohort: CohortLesions, max_patients: int = MAX_PATIENTS) -> list[str]:
    """Test patients with reference lesions first (most lesions first), and one without any when there is one."""
    test = cohort.test_ids()
    reference = next(iter(cohort.segmenters.values())).reference
    counts = reference[reference["patient_id"].isin(test)].groupby("patient_id").size()
    with_lesions = sorted((p for p in test if counts.get(p, 0) > 0), key=lambda p: (-int(counts[p]), p))
    free = [p for p in test if counts.get(p, 0) == 0]
    n_free = 1 if free and max_patients > 1 else 0
    chosen = with_lesions[:max_patients - n_free]
    chosen += free[:max_patients - len(chosen)]
    return chosen


@dataclass(frozen=True)
class Target:
    """One row of a patient figure: the lesion whose centre the slice goes through."""

    z: int
    y: int
    x: int
    label: str


def _lesion_text(row: Any) -> str:
    bone = row.get("bone_name")
    bone = bone if isinstance(bone, str) and bone else "outside bone"
    return f"{bone}, {float(row['volume_ml']):.1f} mL"


def choose_targets(cohort: CohortLesions, images: PatientImages, max_rows: int = MAX_ROWS) -> list[Target]:
    """Slices through the reference lesions' centres (largest first), then through each false positive's."""
    first = next(iter(cohort.segmenters.values()))
    reference = first.reference[first.reference["patient_id"] == images.patient_id].sort_values(
        "volume_ml", ascending=False)
    refs = [Target(*images.index(r), f"reference lesion {int(r['lesion_id'])}: {_lesion_text(r)}")
            for _, r in reference.iterrows()]
    per_segmenter = []
    for name, seg in cohort.segmenters.items():
        table = seg.lesions[(seg.lesions["patient_id"] == images.patient_id)]
        table = table[_flag(table["false_positive"])] if len(table) else table
        per_segmenter.append([Target(*images.index(r), f"{name} false positive {int(r['lesion_id'])}: "
                                                       f"{_lesion_text(r)}")
                              for _, r in table.sort_values("volume_ml", ascending=False).iterrows()])
    # the largest false positive of each segmenter in turn, so one segmenter's many do not hide another's
    fps = [t for rank in zip_longest(*per_segmenter) for t in rank if t is not None]
    n_fp = min(len(fps), max(max_rows // 2, max_rows - len(refs)))
    ordered = refs[:max_rows - n_fp] + fps + refs[max_rows - n_fp:]  # the rest fill rows a duplicate left
    chosen: list[Target] = []
    half = FOV_MM / 4
    for target in ordered:
        # a lesion already on a chosen panel (same slice, well inside its field of view) adds nothing
        if any(t.z == target.z and abs(t.y - target.y) * images.spacing[1] < half
               and abs(t.x - target.x) * images.spacing[0] < half for t in chosen):
            continue
        chosen.append(target)
        if len(chosen) == max_rows:
            break
    if not chosen:  # no lesion, no false positive: one slice through the middle of the bone
        z, y, x = _bone_centre(images)
        chosen.append(Target(int(z), int(y), int(x), "no reference lesion and no prediction: mid-bone slice"))
    return chosen


def _bone_centre(images: PatientImages) -> tuple[int, int, int]:
    """Voxel (z, y, x) at the bone map's centre of mass (from its projections: no index list of every voxel)."""
    if images.bones is None or not images.bones.any():
        return tuple(int(n // 2) for n in images.shape)  # type: ignore[return-value]
    bone = images.bones > 0
    centre = []
    for axes in ((1, 2), (0, 2), (0, 1)):
        weights = bone.sum(axis=axes, dtype=np.int64)
        centre.append(int(round(float((np.arange(weights.size) * weights).sum() / weights.sum()))))
    return tuple(centre)  # type: ignore[return-value]


# ---- drawing --------------------------------------------------------------------------------------------

def _outline(ax: Any, mask: np.ndarray, spacing: tuple[float, float], offset: tuple[int, int], colour: str, *,
             width: float = 1.6, style: str = "solid") -> None:
    """The mask's outline at pixel-edge precision, in the panel's mm coordinates (``offset``: the mask's first
    row and column in the slice)."""
    if not mask.any():
        return
    h, w = mask.shape
    # upsampled 4x (nearest) so the contour follows the pixel edges instead of cutting their corners
    fine = np.kron(np.pad(mask, 1).astype(np.float32), np.ones((4, 4), np.float32))
    xs = (offset[1] - 1 + (np.arange((w + 2) * 4) + 0.5) / 4) * spacing[0]
    ys = (offset[0] - 1 + (np.arange((h + 2) * 4) + 0.5) / 4) * spacing[1]
    ax.contour(xs, ys, fine, levels=[0.5], colors=[colour], linewidths=width, linestyles=style)


def view_window(images: PatientImages, target: Target) -> tuple[slice, slice]:
    """Rows and columns of the slice a panel shows: :data:`FOV_MM` around the target, kept inside the image."""
    out = []
    for centre, n, spacing in ((target.y, images.shape[1], images.spacing[1]),
                               (target.x, images.shape[2], images.spacing[0])):
        side = min(n, max(1, int(round(FOV_MM / spacing))))
        low = int(np.clip(centre - side // 2, 0, n - side))
        out.append(slice(low, low + side))
    return out[0], out[1]


def _window(hu: np.ndarray) -> np.ndarray:
    from osteomet.ct.lesions.overlays import BONE_WINDOW, _windowed

    return _windowed(np.asarray(hu, np.float32), *BONE_WINDOW)


def draw_axial(ax: Any, images: PatientImages, target: Target, segmenter: str | None) -> dict[str, int]:
    """One panel: the slice in the bone window around ``target``; the reference alone (``segmenter`` None) or
    one segmenter's calls. Returns how many lesions of each kind the panel shows."""
    from scipy import ndimage

    z = target.z
    sx, sy = images.spacing[0], images.spacing[1]
    rows, cols = view_window(images, target)
    offset = (rows.start, cols.start)
    extent = (cols.start * sx, cols.stop * sx, rows.stop * sy, rows.start * sy)
    if images.hu is not None:
        ax.imshow(_window(images.hu[z, rows, cols]), cmap="gray", vmin=0, vmax=1, interpolation="nearest",
                  extent=extent)
    counts: dict[str, int] = {}

    def draw(volume: np.ndarray, value: int, kind: str, **style: Any) -> None:
        mask = volume[z, rows, cols] == value
        if mask.any():
            _outline(ax, mask, (sx, sy), offset, COLOURS[kind], **style)
            counts[kind] = int(ndimage.label(mask)[1])

    if segmenter is None:
        if images.reference is not None:
            draw(images.reference, 1, "reference")
    else:
        found = images.found.get(segmenter)
        if found is not None:
            draw(found, 1, "reference", width=1.0, style="dashed")
            draw(found, 2, "missed", width=2.0)
        predicted = images.predicted.get(segmenter)
        if predicted is not None:
            draw(predicted, 1, "true_positive")
            draw(predicted, 2, "false_positive")
        elif found is None:
            ax.text(0.5, 0.5, "no mask or table", color="white", ha="center", transform=ax.transAxes, fontsize=8)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_facecolor("black")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    return counts


def _legend(fig: Any, kinds: list[str]) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=COLOURS[k], lw=2.2, label=LEGEND[k]) for k in kinds]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False)


def _coronal(images: PatientImages) -> tuple[np.ndarray, str]:
    """A coronal projection, head up: bone thickness from the bone map, else the CT's maximum intensity."""
    if images.projection is not None:
        return images.projection
    if images.bones is not None and images.bones.any():
        projection = (images.bones > 0).sum(axis=1).astype(np.float32)
        top = float(np.percentile(projection[projection > 0], 99)) or 1.0
        return np.clip(projection / top, 0, 1)[::-1], "bone map (coronal projection)"
    if images.hu is not None:
        return _window(images.hu.max(axis=1))[::-1], "CT (coronal MIP)"
    return np.zeros((images.shape[0], images.shape[2]), np.float32), "no image"


def patient_figure(cohort: CohortLesions, images: PatientImages, max_rows: int = MAX_ROWS) -> Any:
    """One patient: a coronal locator, then per chosen slice the reference and each segmenter's calls."""
    from osteomet.utils.figures import pyplot

    plt = pyplot()
    targets = choose_targets(cohort, images, max_rows)
    names = list(cohort.segmenters)
    n_rows, n_cols = len(targets), 1 + len(names)
    panel = 2.7
    fig = plt.figure(figsize=(2.6 + panel * n_cols, panel * n_rows + 1.5), dpi=100)
    # the locator, a blank column for the row labels, then the panels
    grid = fig.add_gridspec(n_rows, n_cols + 2, width_ratios=[0.7, 0.28] + [1.0] * n_cols, left=0.02, right=0.99,
                            top=1 - 0.75 / (panel * n_rows + 1.5), bottom=0.75 / (panel * n_rows + 1.5),
                            wspace=0.05, hspace=0.22)
    locator = fig.add_subplot(grid[:, 0])
    coronal, what = _coronal(images)
    sx, sz = images.spacing[0], images.spacing[2]
    depth = images.shape[0]
    locator.imshow(coronal, cmap="gray", vmin=0, vmax=1, extent=(0, coronal.shape[1] * sx, 0, depth * sz),
                   interpolation="nearest")
    rows_at: dict[int, list[str]] = {}
    for number, target in enumerate(targets, start=1):
        rows_at.setdefault(target.z, []).append(str(number))
    for z, numbers in rows_at.items():  # rows on one slice share its line
        height = (z + 0.5) * sz
        locator.axhline(height, color="#ff9f1a", lw=1.0)
        locator.text(coronal.shape[1] * sx, height, " " + ",".join(numbers), color="#ff9f1a", fontsize=8,
                     va="center", ha="left", clip_on=False)
    locator.set_title(what, fontsize=7)
    locator.axis("off")
    kinds: set[str] = set()
    for r, target in enumerate(targets):
        for c, name in enumerate([None, *names]):
            ax = fig.add_subplot(grid[r, c + 2])
            counts = draw_axial(ax, images, target, name)
            kinds |= set(counts)
            if c == 0:
                ax.set_ylabel(f"{r + 1}: slice {target.z}\n" + target.label.replace(": ", ":\n", 1), fontsize=7)
            if r == 0:
                ax.set_title("reference" if name is None else name, fontsize=9)
            if name is not None and counts:
                text = ", ".join(f"{counts[k]} {k.replace('_', ' ')}" for k in
                                 ("true_positive", "false_positive", "missed") if k in counts)
                if text:
                    ax.text(0.02, 0.02, text, transform=ax.transAxes, fontsize=6.5, color="white", va="bottom",
                            bbox={"facecolor": "black", "alpha": 0.6, "pad": 1.5, "edgecolor": "none"})
    split = cohort.split_of(images.patient_id)
    summary = []
    for name, seg in cohort.segmenters.items():
        ref = seg.reference[seg.reference["patient_id"] == images.patient_id]
        pred = seg.lesions[seg.lesions["patient_id"] == images.patient_id]
        fp = int(_flag(pred["false_positive"]).sum()) if len(pred) else 0
        summary.append(f"{name}: {int(_flag(ref['detected']).sum()) if len(ref) else 0} of {len(ref)} found, "
                       f"{fp} false positive{'s' if fp != 1 else ''}")
    fig.suptitle(f"Patient {images.patient_id}" + (f" ({split})" if split else "") + " - " + "; ".join(summary),
                 fontsize=9)
    if kinds:
        _legend(fig, [k for k in ("reference", "true_positive", "false_positive", "missed") if k in kinds])
    return fig


def bone_map_figure(cohort: CohortLesions, segmenter: str, patient_ids: list[str],
                    images: dict[str, PatientImages] | None = None) -> Any:
    """Each patient's coronal bone map with the lesions' centres: found (green), missed (yellow), false positive (red)."""
    from matplotlib.lines import Line2D

    from osteomet.utils.figures import pyplot

    plt = pyplot()
    seg = cohort.segmenters[segmenter]
    n = len(patient_ids)
    cols = min(n, 4)
    rows = -(-n // cols)
    first = (images or {}).get(patient_ids[0]) if patient_ids else None
    # panel height from the first patient's body proportions: a whole-body scan is tall, a pelvis wide
    ratio = (first.shape[0] * first.spacing[2]) / (first.shape[2] * first.spacing[0]) if first is not None else 1.75
    height = float(np.clip(2.4 * ratio, 1.6, 5.0)) + 0.3
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, height * rows + 0.8), dpi=100, squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    markers = {"found": ("o", COLOURS["true_positive"]), "missed": ("X", COLOURS["missed"]),
               "false_positive": ("^", COLOURS["false_positive"])}
    for ax, pid in zip(axes.ravel(), patient_ids):
        try:
            patient = (images or {}).get(pid) or load_bone_map(cohort, pid)
        except Exception as exc:  # noqa: BLE001 (one unreadable bone map leaves a blank panel, not the figure)
            _logger.warning("patient %s: bone map not drawn (%s)", pid, exc)
            ax.set_title(f"{pid}: bone map not readable", fontsize=8)
            ax.axis("off")
            continue
        coronal, _ = _coronal(patient)
        sx, sz = patient.spacing[0], patient.spacing[2]
        depth = patient.shape[0]
        ax.imshow(coronal, cmap="gray", vmin=0, vmax=1, extent=(0, coronal.shape[1] * sx, 0, depth * sz),
                  interpolation="nearest")
        ref = seg.reference[seg.reference["patient_id"] == pid]
        pred = seg.lesions[seg.lesions["patient_id"] == pid]
        pred = pred[_flag(pred["false_positive"])] if len(pred) else pred
        detected = _flag(ref["detected"]) if len(ref) else np.zeros(0, bool)
        for kind, rows_ in (("found", ref[detected]), ("missed", ref[~detected]), ("false_positive", pred)):
            marker, colour = markers[kind]
            for _, row in rows_.iterrows():
                z, _, x = patient.index(row)
                ax.plot((x + 0.5) * sx, (z + 0.5) * sz, marker=marker, ms=8, mfc="none" if kind == "found" else colour,
                        mec=colour, mew=1.8, ls="none")
        ax.set_title(f"{pid}: {int(detected.sum())}/{len(ref)} found, {len(pred)} false pos.", fontsize=8)
        ax.axis("off")
    handles = [Line2D([], [], marker=m, color=c, mfc="none" if k == "found" else c, mew=1.8, ls="none", ms=8,
                      label={"found": "reference lesion found", "missed": "reference lesion missed",
                             "false_positive": "false positive"}[k]) for k, (m, c) in markers.items()]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(f"{segmenter}: lesion centres on each patient's bone map (coronal, patient right on the left)",
                 fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, top=1 - 0.62 / (height * rows + 0.8),
                        bottom=0.5 / (height * rows + 0.8), wspace=0.05, hspace=0.15)
    return fig


def bone_counts(cohort: CohortLesions, patient_ids: list[str]) -> pd.DataFrame:
    """Per segmenter and bone (anatomical order): reference lesions, found, missed, false positives."""
    from osteomet.data.totalsegmentator import BONE_GROUPS, BONE_IDS_BY_NAME, TOTALSEG_BONES

    rows = []
    for name, seg in cohort.segmenters.items():
        ref = seg.reference[seg.reference["patient_id"].isin(patient_ids)]
        pred = seg.lesions[seg.lesions["patient_id"].isin(patient_ids)]
        pred = pred[_flag(pred["false_positive"])] if len(pred) else pred
        found = pd.Series(_flag(ref["detected"]) if len(ref) else np.zeros(0, bool), index=ref.index)
        ref_bone = ref.get("bone_name", pd.Series(index=ref.index, dtype=object)).fillna("outside bone")
        fp_bone = pred.get("bone_name", pd.Series(index=pred.index, dtype=object)).fillna("outside bone")
        for bone in sorted(set(ref_bone) | set(fp_bone)):
            here = ref_bone == bone
            bone_id = BONE_IDS_BY_NAME.get(bone)
            group = TOTALSEG_BONES[bone_id].group if bone_id is not None else "outside bone"
            rows.append({"segmenter": name, "bone_name": bone, "bone_group": group,
                         "reference": int(here.sum()), "found": int(found[here].sum()),
                         "missed": int((~found[here]).sum()), "false_positive": int((fp_bone == bone).sum()),
                         "_order": (BONE_GROUPS.index(group) if group in BONE_GROUPS else len(BONE_GROUPS),
                                    -(bone_id or 0))})
    frame = pd.DataFrame(rows, columns=["segmenter", "bone_name", "bone_group", "reference", "found", "missed",
                                        "false_positive", "_order"])
    return frame.sort_values(["segmenter", "_order"], kind="stable").drop(columns="_order").reset_index(drop=True)


def bone_chart(counts: pd.DataFrame, scope: str = "test patients") -> Any:
    """Horizontal bars per bone, one panel per segmenter: found and missed reference lesions, and false positives."""
    from osteomet.utils.figures import pyplot

    plt = pyplot()
    names = list(dict.fromkeys(counts["segmenter"]))
    bones = list(dict.fromkeys(counts["bone_name"]))
    fig, axes = plt.subplots(1, len(names), figsize=(1.5 + 3.2 * len(names), 1.2 + 0.28 * len(bones)), dpi=100,
                             sharey=True, squeeze=False)
    y = np.arange(len(bones))
    for ax, name in zip(axes[0], names):
        part = counts[counts["segmenter"] == name].set_index("bone_name").reindex(bones).fillna(0)
        ax.barh(y - 0.2, part["found"], height=0.38, color=COLOURS["true_positive"], label="found")
        ax.barh(y - 0.2, part["missed"], left=part["found"], height=0.38, color=COLOURS["missed"], label="missed")
        ax.barh(y + 0.2, part["false_positive"], height=0.38, color=COLOURS["false_positive"], label="false positive")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(f"lesions ({scope})", fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(y, [b.replace("_", " ") for b in bones], fontsize=7)
    axes[0][0].invert_yaxis()
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.35 / (1.2 + 0.28 * len(bones)), 1, 1))
    return fig


def group_table(counts: pd.DataFrame) -> pd.DataFrame:
    """:func:`bone_counts` summed by bone group (the report's small table beside the bone map)."""
    if counts.empty:
        return counts
    order = list(dict.fromkeys(counts["bone_group"]))
    table = counts.groupby(["segmenter", "bone_group"], sort=False)[["reference", "found", "missed",
                                                                     "false_positive"]].sum().reset_index()
    table["_order"] = table["bone_group"].map(order.index)
    return table.sort_values(["segmenter", "_order"], kind="stable").drop(columns="_order").reset_index(drop=True)


# ---- all of them -----------------------------------------------------------------------------------------

@dataclass
class LesionFigures:
    """The cohort's figures (open matplotlib figures) with their captions, and the counts behind the bone map."""

    figures: list[tuple[str, Any]]
    counts: pd.DataFrame


def lesion_figures(layout: RunLayout, *, max_patients: int = MAX_PATIENTS,
                   max_map_patients: int = MAX_MAP_PATIENTS) -> LesionFigures | None:
    """Every figure of the run's CT lesions (None when the run has no evaluated lesions or no manifest)."""
    cohort = cohort_lesions(layout)
    if cohort is None:
        return None
    figures: list[tuple[str, Any]] = []
    loaded: dict[str, PatientImages] = {}
    scope = cohort.scope()
    who = {"test patients": "Test patient", "external patients": "External patient"}.get(scope, "Patient")
    for pid in choose_patients(cohort, max_patients):
        try:
            loaded[pid] = load_patient(cohort, pid)
        except Exception as exc:  # noqa: BLE001 (a moved or unreadable file leaves this patient out, not the report)
            _logger.warning("patient %s: no lesion figure (%s)", pid, exc)
            continue
        figures.append((f"{who} {pid}: reference and each segmenter's lesions on the same axial slices",
                        patient_figure(cohort, loaded[pid])))
        loaded[pid] = loaded[pid].slim()  # one whole-body CT's volumes in memory at a time
    test = cohort.test_ids()
    counts = bone_counts(cohort, test)
    with_bones = [p for p in test if cohort.record(p).get("bone_map")]
    shown = sorted(with_bones, key=lambda p: (p not in loaded, p))[:max_map_patients]
    if shown:
        for name in cohort.segmenters:
            try:
                figures.append((f"{name}: where lesions were found, missed and falsely called ({scope})",
                                bone_map_figure(cohort, name, shown, loaded)))
            except Exception as exc:  # noqa: BLE001
                _logger.warning("%s: no bone-map figure (%s)", name, exc)
    if not counts.empty:
        figures.append((f"Lesions by bone, {scope}", bone_chart(counts, scope)))
    return LesionFigures(figures, counts)


def write_lesion_figures(layout: RunLayout, out: Path | None = None) -> list[Path]:
    """Write :func:`lesion_figures` as PNGs (``ct/lesions/figures/NN_<name>.png``), their captions
    (``figures.json``) and the counts by bone (``lesions_by_bone.csv``).

    For a stage to call once the per-lesion analysis is done, so the report embeds them instead of
    reading the images again.
    """
    import re

    from osteomet.utils.figures import save_figure
    from osteomet.utils.files import write_json_atomic, write_text_atomic

    out = Path(out) if out is not None else layout.ct_lesions / FIGURES
    result = lesion_figures(layout)
    if result is None:
        return []
    paths, index = [], []
    for number, (caption, fig) in enumerate(result.figures, start=1):
        slug = re.sub(r"[^a-z0-9]+", "_", caption.lower()).strip("_")[:60]
        paths.append(save_figure(fig, out / f"{number:02d}_{slug}.png", tight_bbox=True))
        index.append({"file": paths[-1].name, "caption": caption})
    write_text_atomic(out / BONE_COUNTS, result.counts.to_csv(index=False))
    write_json_atomic(out / FIGURE_INDEX, {"figures": index})
    return paths


def render(fig: Any) -> np.ndarray:
    """The figure as an RGBA array (height x width x 4, uint8), drawn as it would be saved; for checking pixels."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba()).copy()
