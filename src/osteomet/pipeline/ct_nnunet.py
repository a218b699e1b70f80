"""nnU-Net v2 as stages of the CT study: export, plan + preprocess, train each fold, predict, import.

nnU-Net runs as the real package (:mod:`osteomet.ct.nnunet.run`, each step in a child
process), on the study's own split (``ct/split/manifest.csv``), so that it is one more
segmenter beside the MONAI ones. Each step is a stage with its own folder, and each of
nnU-Net's three trees lies in the folder of the step that writes it; the environment of every
nnU-Net process points at them::

    ct/nnunet/export/    nnUNet_raw/Dataset501_OsteometCT/ (imagesTr, labelsTr, imagesTs, labelsTs, dataset.json,
                         osteomet_export.json), nnUNet_preprocessed/.../splits_final.json (the study split)
    ct/nnunet/plan/      nnUNet_preprocessed/Dataset501_OsteometCT/ (fingerprint, plans, preprocessed data)
    ct/nnunet/train/     nnUNet_results/Dataset501_OsteometCT/<trainer>__<plans>__<configuration>/fold_<k>/
    ct/nnunet/predict/   labels/<case>.nii.gz: nnU-Net's label map of every patient
    ct/nnunet/logs/      the output of every nnU-Net process (outside the stage folders: kept when a step fails)
    ct/segmentation/predictions/nnunet/   masks/<patient_id>.nii.gz and metrics.csv, as each MONAI segmenter's

The import writes nnU-Net's masks where the MONAI segmenters write theirs, on each patient's
CT grid and scored the same way, so the comparison, the per-lesion analysis and the radiomics
ICC take nnU-Net up like any other segmenter. Every patient is predicted (train and val too),
as the MONAI segmenters are: the per-lesion analysis and the ICC read a mask for each patient;
the comparison uses the test patients only. Training continues an interrupted fold from
nnU-Net's own ``checkpoint_latest.pth`` (``--c``) and skips the folds that finished; a change
of settings or inputs discards the trained folds and starts over.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from osteomet.ct.nnunet.layout import NnunetLayout
from osteomet.data.manifest import read_manifest
from osteomet.layout import METRICS, RunLayout
from osteomet.pipeline.inputs import manifest_inputs
from osteomet.stage import Stage, StageOutcome

#: The segmenter name of nnU-Net's masks (``ct/segmentation/predictions/nnunet``, ``ct/lesions/nnunet``, ...).
NNUNET_MODEL = "nnunet"
DATASET_NAME = "OsteometCT"
#: The nnU-Net trees a changed stage discards (the stage folder's partial work).
RAW, PREPROCESSED, RESULTS = "nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"
LABELS = "labels"
CHECKPOINT = "checkpoint_final.pth"


@dataclass(frozen=True)
class NnunetStages:
    """The stage folders of nnU-Net's steps in a run directory, and the nnU-Net layout that joins them."""

    root: Path  # ct/nnunet
    imported: Path  # ct/segmentation/predictions/nnunet

    @classmethod
    def of(cls, layout: RunLayout) -> "NnunetStages":
        return cls(layout.ct_nnunet, layout.ct_segmentation / "predictions" / NNUNET_MODEL)

    @property
    def export(self) -> Path:
        return self.root / "export"

    @property
    def plan(self) -> Path:
        return self.root / "plan"

    @property
    def train(self) -> Path:
        return self.root / "train"

    @property
    def predict(self) -> Path:
        return self.root / "predict"

    def layout(self, dataset_id: int) -> NnunetLayout:
        """The three trees in the export, plan and train folders; nnU-Net's logs in ``ct/nnunet/logs``."""
        return NnunetLayout(self.root, dataset_id, DATASET_NAME, raw_at=self.export / RAW,
                            preprocessed_at=self.plan / PREPROCESSED, results_at=self.train / RESULTS)


def export_nnunet(manifest: Path, out: Path, settings: Any, *, seed: int = 0) -> StageOutcome:
    """The study manifest as nnU-Net's raw dataset, its split as ``splits_final.json``."""
    from osteomet.ct.nnunet.export import export_dataset, read_exported_cases

    cohort = read_manifest(manifest, kind="ct", require=("lesion_mask",))
    stage = Stage("ct-nnunet-export", out, settings={"dataset_id": settings.dataset_id, "dataset_name": DATASET_NAME,
                                                     "cross_validation": settings.cross_validation, "seed": seed},
                  inputs=manifest_inputs(cohort, manifest))

    def work() -> dict[str, Any]:
        splits = {r.patient_id: str(r.split) for r in cohort}
        if settings.cross_validation:  # nnU-Net's K folds over train and val pooled; test stays unseen
            splits = {p: "train" if s == "val" else s for p, s in splits.items()}
        layout = export_dataset(cohort, out, dataset_id=settings.dataset_id, dataset_name=DATASET_NAME,
                                splits=splits, n_folds=settings.cross_validation or 5, seed=seed, overwrite=True)
        cases = read_exported_cases(layout)
        return {"dataset": layout.folder_name, "folds": len(layout.read_splits()),
                "cases": {s: sum(c.split == s for c in cases) for s in sorted({c.split for c in cases})}}

    return stage.run(work, partial=(RAW, PREPROCESSED, RESULTS))


def plan_nnunet(stages: NnunetStages, settings: Any) -> StageOutcome:
    """nnU-Net's integrity check, fingerprint, experiment planning and preprocessing of the configuration."""
    from osteomet.ct.nnunet.run import configuration_data_folder, plan_and_preprocess

    layout = stages.layout(settings.dataset_id)
    exported = NnunetLayout(stages.export, settings.dataset_id, DATASET_NAME)
    stage = Stage("ct-nnunet-plan", stages.plan, settings={"planner": settings.planner,
                                                           "configuration": settings.configuration},
                  inputs={"export": stages.export})

    def work() -> dict[str, Any]:
        layout.preprocessed.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(exported.splits_file, layout.splits_file)  # nnU-Net keeps a split file it finds
        plans = plan_and_preprocess(layout, configurations=(settings.configuration,),
                                    num_processes=settings.processes, planner=settings.planner)
        configuration_data_folder(layout, plans.stem, settings.configuration)  # planned and preprocessed
        return {"plans": plans.stem, "configuration": settings.configuration}

    return stage.run(work, partial=(PREPROCESSED,))


def fold_finished(fold: Path) -> bool:
    """nnU-Net finished the fold: final checkpoint and the validation it runs after training."""
    return (fold / CHECKPOINT).is_file() and (fold / "validation" / "summary.json").is_file()


def train_nnunet(stages: NnunetStages, settings: Any, plans: str, *, device: str,
                 log: Callable[[str], None] = print) -> StageOutcome:
    """Each fold with nnU-Net's run_training; an interrupted fold continues from its latest checkpoint."""
    from osteomet.ct.nnunet.run import model_folder, train

    layout = stages.layout(settings.dataset_id)
    folds = settings.fold_list
    stage = Stage("ct-nnunet-train", stages.train, settings={"trainer": settings.trainer, "plans": plans,
                                                             "configuration": settings.configuration, "folds": folds},
                  inputs={"plan": stages.plan})
    model = model_folder(layout, settings.trainer, plans, settings.configuration)

    def work() -> dict[str, Any]:
        summary: dict[str, Any] = {}
        for fold in folds:
            folder = model / f"fold_{fold}"
            if not fold_finished(folder):
                # a fold folder here is an interrupted training of these settings (a changed stage discards it)
                resume = folder.is_dir()
                log(f"ct nnunet train: fold {fold} of {folds} ({settings.trainer}, {settings.configuration}, {device})"
                    + (", continued from its latest checkpoint" if resume else ""))
                train(layout, configuration=settings.configuration, fold=fold, trainer=settings.trainer, plans=plans,
                      device=device, num_processes=settings.processes, n_proc_da=settings.processes,
                      continue_training=resume, torch_threads=settings.cpu_threads)
            summary[f"fold_{fold}"] = {"validation_dice": _validation_dice(folder)}
        return summary

    return stage.run(work, partial=(RESULTS,))


def _validation_dice(fold: Path) -> float | None:
    from osteomet.utils.files import read_json

    record = read_json(fold / "validation" / "summary.json") or {}
    value = (record.get("foreground_mean") or {}).get("Dice")
    return None if value is None else round(float(value), 4)


def predict_nnunet(stages: NnunetStages, settings: Any, plans: str, *, device: str) -> StageOutcome:
    """nnU-Net's inference on every patient's exported CT (the folds ensembled)."""
    from osteomet.ct.nnunet.run import predict

    layout = stages.layout(settings.dataset_id)
    out = stages.predict
    stage = Stage("ct-nnunet-predict", out, settings={"trainer": settings.trainer, "plans": plans,
                                                      "configuration": settings.configuration,
                                                      "folds": settings.fold_list, "checkpoint": CHECKPOINT,
                                                      "disable_tta": settings.disable_tta},
                  inputs={"model": stages.train})

    def work() -> dict[str, Any]:
        images = out / ".images"  # every patient's image, train/val and test alike, in one input folder
        if images.exists():
            shutil.rmtree(images)
        images.mkdir(parents=True)
        try:
            for folder in ("imagesTr", "imagesTs"):
                for image in sorted((layout.raw / folder).glob("*_0000.nii.gz")):
                    _link(image, images / image.name)
            predict(layout, out / LABELS, input_dir=images, configuration=settings.configuration,
                    folds=settings.fold_list, trainer=settings.trainer, plans=plans, checkpoint=CHECKPOINT,
                    device=device, disable_tta=settings.disable_tta, num_processes=settings.processes,
                    overwrite=True)
        finally:
            shutil.rmtree(images, ignore_errors=True)
        return {"patients": len(list((out / LABELS).glob("*.nii.gz")))}

    return stage.run(work, partial=(LABELS, ".images"))


def _link(source: Path, target: Path) -> None:
    """A hard link where the file system allows one (no copy of the CT), else a copy."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def import_nnunet(manifest: Path, stages: NnunetStages, settings: Any) -> StageOutcome:
    """nnU-Net's label maps as osteomet masks on each patient's CT grid, scored like the MONAI segmenters'."""
    from osteomet.ct.nnunet.importer import import_into
    from osteomet.errors import MissingInputError

    cohort = read_manifest(manifest, kind="ct")
    out = stages.imported
    stage = Stage("ct-nnunet-import", out, settings={"model": NNUNET_MODEL},
                  inputs={**manifest_inputs(cohort, manifest), "predictions": stages.predict},
                  outputs=("masks", METRICS))

    def work() -> dict[str, Any]:
        table = import_into(stages.predict / LABELS, stages.layout(settings.dataset_id), out, model=NNUNET_MODEL,
                            manifest=cohort)
        missing = sorted(set(cohort.patient_ids) - set(table["patient_id"]))
        if missing:  # every later stage reads a mask per patient
            raise MissingInputError(f"{stages.predict / LABELS}: nnU-Net wrote no prediction for "
                                    f"{len(missing)} patient(s): {', '.join(missing[:10])}")
        test = table.loc[table["split"] == "test", "dice"].dropna()
        return {"patients": len(table), "mean_test_dice": round(float(test.mean()), 4) if len(test) else None}

    return stage.run(work)


def run_ct_nnunet(manifest: Path, layout: RunLayout, settings: Any, *, seed: int, device: str | None,
                  timed: Callable[[str, Callable[[], StageOutcome]], StageOutcome],
                  log: Callable[[str], None] = print) -> Path:
    """Every nnU-Net step of ``run ct`` (``timed`` runs and reports one stage); returns the imported model folder."""
    from osteomet.ct.nnunet.run import default_device

    stages = NnunetStages.of(layout)
    device = settings.device or device or default_device()  # cuda:N was refused by settings.check
    timed("ct nnunet export", lambda: export_nnunet(manifest, stages.export, settings, seed=seed))
    planned = timed("ct nnunet plan", lambda: plan_nnunet(stages, settings))
    plans = planned.summary["plans"]
    timed("ct nnunet train", lambda: train_nnunet(stages, settings, plans, device=device, log=log))
    timed("ct nnunet predict", lambda: predict_nnunet(stages, settings, plans, device=device))
    timed("ct nnunet import", lambda: import_nnunet(manifest, stages, settings))
    return stages.imported
