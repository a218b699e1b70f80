"""Write a CT manifest as an nnU-Net v2 raw dataset, with the osteomet patient split as its folds.

nnU-Net decides its own cross-validation split unless ``splits_final.json`` exists; writing
that file from the manifest keeps nnU-Net on exactly the patients the MONAI models train and
validate on, so the models can be compared patient by patient on the same test set. Test
(and external) patients go to ``imagesTs`` and their reference masks to ``labelsTs``, where
nnU-Net never looks during training.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import SimpleITK as sitk

from osteomet import __version__
from osteomet.ct.nnunet.layout import CHANNEL_SUFFIX, DATASET_JSON, EXPORT_RECORD, FILE_ENDING, NnunetLayout
from osteomet.ct.slices.config import SliceConfig
from osteomet.data.case import check_hounsfield
from osteomet.data.images import read_image, write_image
from osteomet.data.label_masks import read_mask
from osteomet.data.manifest import Manifest, ManifestError, read_manifest
from osteomet.errors import InputError, MissingInputError, OutputExistsError
from osteomet.layout import open_run_dir
from osteomet.utils.files import write_json_atomic

#: Splits that nnU-Net trains on (imagesTr) and those it must never see during training (imagesTs).
TRAIN_SPLITS = ("train", "val")
HELD_OUT_SPLITS = ("test", "external")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass(frozen=True)
class ExportedCase:
    """One patient in the exported dataset (paths relative to the dataset folder)."""

    case_id: str
    patient_id: str
    split: str
    image: str
    label: str | None
    source_ct: str
    source_mask: str | None

    @property
    def held_out(self) -> bool:
        return self.split in HELD_OUT_SPLITS


def case_identifier(patient_id: str) -> str:
    """nnU-Net case id for a patient: unsafe characters become '-' (ids name files and JSON keys)."""
    case = _UNSAFE.sub("-", patient_id.strip()).strip("-")
    if not case:
        raise InputError(f"patient id {patient_id!r} has no letter or digit to build an nnU-Net case id from")
    return case


def case_identifiers(patient_ids: Sequence[str]) -> dict[str, str]:
    """Patient id -> case id; refuses two patients that would share a case id."""
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for pid in patient_ids:
        case = case_identifier(pid)
        if case in seen:
            raise InputError(f"patients {seen[case]!r} and {pid!r} both become nnU-Net case id {case!r}; rename one")
        seen[case] = pid
        out[pid] = case
    return out


def read_split_table(path: str | os.PathLike[str]) -> dict[str, str]:
    """Patient id -> split from a CSV with ``patient_id`` and ``split`` (e.g. a slice dataset's patients.csv)."""
    import pandas as pd

    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise MissingInputError(f"{path}: split table not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ManifestError(path, [f"not a readable CSV file ({exc})"]) from exc
    missing = {"patient_id", "split"} - set(table.columns)
    if missing:
        raise ManifestError(path, [f"split table lacks column(s) {', '.join(sorted(missing))}"])
    dupes = sorted(table.loc[table["patient_id"].duplicated(), "patient_id"].unique())
    if dupes:
        raise ManifestError(path, [f"patient {p!r} appears more than once" for p in dupes])
    return {row.patient_id.strip(): row.split.strip().lower() for row in table.itertuples() if row.split.strip()}


def patient_splits(manifest: Manifest, splits: Mapping[str, str] | None = None,
                   config: SliceConfig | None = None) -> dict[str, str]:
    """Split per patient: ``splits`` when given, else the one the slice dataset (MONAI models) would draw.

    Without a table this is :func:`osteomet.ct.slices.dataset.patient_splits` on the same patients,
    in manifest order, with the same lesion labels and settings: the manifest's split column
    when complete (validation drawn from train when it has none), else 80:20 train/test
    stratified by lesion status with validation from train.
    """
    if splits is None:
        import pandas as pd

        from osteomet.ct.slices.dataset import patient_splits as slice_splits

        config = config or SliceConfig()
        table = pd.DataFrame({"patient_id": manifest.patient_ids, "split": [r.split for r in manifest],
                              "label": [_lesion_label(r.lesion_mask, config.min_lesion_voxels) for r in manifest]})
        drawn = slice_splits(table, config)
        splits = dict(zip(table["patient_id"], drawn))
    problems = []
    out: dict[str, str] = {}
    for record in manifest:
        split = splits.get(record.patient_id)
        if split is None or (isinstance(split, float) and split != split):
            problems.append(f"patient {record.patient_id!r}: no split")
        elif split not in TRAIN_SPLITS + HELD_OUT_SPLITS:
            problems.append(f"patient {record.patient_id!r}: unknown split {split!r}")
        else:
            out[record.patient_id] = str(split)
    unknown = sorted(set(splits) - set(manifest.patient_ids))
    if unknown:
        problems.append(f"split given for patients not in the manifest: {', '.join(unknown)}")
    if problems:
        raise ManifestError(manifest.path, problems + ["every patient needs a split (train, val, test or external) "
                                                       "so that nnU-Net uses the same patients as the other models"])
    if not any(s in TRAIN_SPLITS for s in out.values()):
        raise ManifestError(manifest.path, ["no patient is in the train or val split: nothing to train nnU-Net on"])
    return out


def _lesion_label(mask_path: Path | None, min_lesion_voxels: int) -> float:
    """The slice dataset's patient label: some axial slice holds ``min_lesion_voxels`` lesion voxels (NaN: no mask)."""
    if mask_path is None:
        return float("nan")
    image = read_image(mask_path)  # kept alive: a view of a temporary image reads freed memory
    array = sitk.GetArrayViewFromImage(image)
    return float(np.count_nonzero(array.reshape(array.shape[0], -1), axis=1).max() >= min_lesion_voxels)


def build_folds(train_ids: Sequence[str], val_ids: Sequence[str], *, n_folds: int = 5,
                seed: int = 0) -> list[dict[str, list[str]]]:
    """nnU-Net's splits_final.json: one fold = the given train/val split, or K folds by patient if no val."""
    train_ids, val_ids = sorted(train_ids), sorted(val_ids)
    overlap = set(train_ids) & set(val_ids)
    if overlap:
        raise InputError(f"cases in both train and val: {', '.join(sorted(overlap))}")
    if val_ids:
        if not train_ids:
            raise InputError("the split has validation patients but no training patient")
        return [{"train": train_ids, "val": val_ids}]
    if len(train_ids) < 2:
        raise InputError(f"{len(train_ids)} training patient(s) and no validation patient: cross-validation "
                         f"needs at least 2")
    from sklearn.model_selection import KFold

    k = min(int(n_folds), len(train_ids))
    if k < 2:
        raise InputError(f"n_folds must be at least 2, got {n_folds}")
    folds = []
    ids = np.asarray(train_ids)
    for tr, va in KFold(n_splits=k, shuffle=True, random_state=seed).split(ids):
        folds.append({"train": sorted(ids[tr].tolist()), "val": sorted(ids[va].tolist())})
    return folds


def export_dataset(manifest: Manifest | str | os.PathLike[str], out: str | os.PathLike[str], *,
                   dataset_id: int = 501, dataset_name: str = "OsteometCT",
                   splits: Mapping[str, str] | None = None, split_config: SliceConfig | None = None,
                   n_folds: int = 5, seed: int = 0,
                   overwrite: bool = False, progress: Callable[[], None] | None = None) -> NnunetLayout:
    """Export ``manifest`` into ``out`` (an osteomet run directory holding the three nnU-Net trees).

    ``splits`` (patient id -> train/val/test/external) is the split of the MONAI run to compare
    with (its slice dataset's ``patients.csv``); without it the split is drawn exactly as the
    slice dataset draws it with ``split_config``. The dataset folder is built under a hidden
    temporary name and renamed into place at the end, so an interrupted export never leaves a
    half dataset that nnU-Net would plan on. With ``overwrite`` the raw and preprocessed
    folders of the dataset are replaced; trained models in nnUNet_results are left alone.
    """
    if not isinstance(manifest, Manifest):
        manifest = read_manifest(manifest, kind="ct")
    if manifest.kind != "ct":
        raise ManifestError(manifest.path, [f"is a {manifest.kind} manifest; nnU-Net export needs a CT manifest"])
    layout = NnunetLayout(Path(out), dataset_id, dataset_name)
    layout.folder_name  # validates id and name before anything is written
    split_of = patient_splits(manifest, splits, split_config)
    case_of = case_identifiers(manifest.patient_ids)
    missing = [r.patient_id for r in manifest if split_of[r.patient_id] in TRAIN_SPLITS and r.lesion_mask is None]
    if missing:
        raise ManifestError(manifest.path, [f"patient {p!r}: no lesion_mask, but nnU-Net needs one for every "
                                            f"train/val patient" for p in missing])
    train = sorted(case_of[p] for p, s in split_of.items() if s == "train")
    val = sorted(case_of[p] for p, s in split_of.items() if s == "val")
    folds = build_folds(train, val, n_folds=n_folds, seed=seed)
    _check_target(layout, manifest, overwrite)

    open_run_dir(layout.root, "nnunet")
    layout.raw_root.mkdir(exist_ok=True)
    staging = layout.raw_root / f".{layout.folder_name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        cases = []
        for record in manifest:
            cases.append(_export_case(record, case_of[record.patient_id], split_of[record.patient_id], staging))
            if progress:
                progress()
        n_training = len(train) + len(val)
        write_json_atomic(staging / DATASET_JSON, {
            "channel_names": {"0": "CT"},
            "labels": {"background": 0, "lesion": 1},
            "numTraining": n_training,
            "file_ending": FILE_ENDING,
            "name": dataset_name,
            "description": f"CT bone lesions exported by osteomet {__version__} from {manifest.path}",
        })
        write_json_atomic(staging / EXPORT_RECORD, {
            "osteomet": __version__, "dataset_id": int(dataset_id), "dataset_name": dataset_name,
            "manifest": str(manifest.path.resolve()) if manifest.path else None,
            "splits_source": "table" if splits is not None else "slice dataset rule",
            "split_config": None if splits is not None else (split_config or SliceConfig()).model_dump(),
            "n_folds": len(folds), "seed": seed,
            "cases": [asdict(c) for c in cases],
        })
        replace_folder(staging, layout.raw)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    if layout.preprocessed.exists():  # stale plans/preprocessed data of an earlier export (only with overwrite)
        shutil.rmtree(layout.preprocessed)
    layout.preprocessed.mkdir(parents=True)
    layout.results_root.mkdir(exist_ok=True)
    write_json_atomic(layout.splits_file, folds)
    return layout


def _export_case(record, case_id: str, split: str, staging: Path) -> ExportedCase:
    held_out = split in HELD_OUT_SPLITS
    images, labels = ("imagesTs", "labelsTs") if held_out else ("imagesTr", "labelsTr")
    ct = read_image(record.ct)
    check_hounsfield(ct, record.ct)
    if ct.GetPixelID() == sitk.sitkFloat64:
        ct = sitk.Cast(ct, sitk.sitkFloat32)
    image_rel = f"{images}/{case_id}{CHANNEL_SUFFIX}{FILE_ENDING}"
    write_image(ct, staging / image_rel)
    label_rel = None
    if record.lesion_mask is not None:
        mask = read_mask(record.lesion_mask, reference=ct, reference_name=record.ct, allow_empty=True)
        mask.CopyInformation(ct)  # within osteomet's tolerance; nnU-Net compares spacings with np.allclose
        label_rel = f"{labels}/{case_id}{FILE_ENDING}"
        write_image(mask, staging / label_rel)
    return ExportedCase(case_id, record.patient_id, split, image_rel, label_rel, str(record.ct),
                        None if record.lesion_mask is None else str(record.lesion_mask))


def _check_target(layout: NnunetLayout, manifest: Manifest, overwrite: bool) -> None:
    if layout.raw_root.is_dir():
        same_id = [p.name for p in layout.raw_root.glob(f"Dataset{layout.dataset_id:03d}_*")
                   if p.is_dir() and p.name != layout.folder_name]
        if same_id:
            raise OutputExistsError(f"{layout.raw_root}: dataset id {layout.dataset_id} is already used by "
                                  f"{', '.join(same_id)}; nnU-Net needs one name per id")
    if layout.raw.exists() and any(layout.raw.iterdir()):
        if not overwrite:
            raise OutputExistsError(f"{layout.raw}: dataset folder already exists and is not empty; "
                                  f"choose another --out or dataset id, or pass --overwrite")
        targets = [layout.raw.resolve(), layout.preprocessed.resolve()]
        for record in manifest:
            for source in (record.ct, record.lesion_mask):
                if source is not None and any(_inside(Path(source).resolve(), t) for t in targets):
                    raise OutputExistsError(f"{source}: input of patient {record.patient_id!r} lies inside "
                                          f"{layout.raw}, which --overwrite would replace")


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
        return True
    except ValueError:
        return False


def replace_folder(new: Path, target: Path) -> None:
    """Rename ``new`` onto ``target``; an existing ``target`` is moved aside first and deleted after."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old)


def read_exported_cases(layout: NnunetLayout) -> list[ExportedCase]:
    """The cases of an exported dataset, as the export recorded them."""
    return [ExportedCase(**case) for case in layout.read_record()["cases"]]
