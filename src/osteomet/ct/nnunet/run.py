"""Run nnU-Net's own planning, training and inference on an exported dataset.

Each step calls nnU-Net's console entry point (the same function as ``nnUNetv2_train`` etc.)
in a child Python process whose environment points ``nnUNet_raw/preprocessed/results`` at
the run directory. A child process because nnU-Net reads those variables, spawns worker
pools and sets torch's thread count globally: none of that should leak into the caller
(a test session, a notebook). Everything the child prints goes to a log file in the run
directory and, optionally, to a callback.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Callable, Sequence

from osteomet.ct.nnunet.layout import NnunetLayout, NnunetLayoutError
from osteomet.errors import InputError, MissingInputError, OsteometError, OutputExistsError

#: The install recipe (nnunetv2 pulls a newer torch through timm unless installed without dependencies).
INSTALL_RECIPE = (
    "python -m pip install --no-deps nnunetv2==2.8.1 acvl_utils==0.2.6 dynamic_network_architectures==0.4.4 "
    "batchgeneratorsv2==0.3.6 && python -m pip install batchgenerators blosc2 graphviz imagecodecs "
    "scikit-image seaborn tifffile yacs tqdm requests"
)
#: nnU-Net console entry points: module, function, program name.
ENTRY_POINTS = {
    "plan_and_preprocess": ("nnunetv2.experiment_planning.plan_and_preprocess_entrypoints",
                            "plan_and_preprocess_entry", "nnUNetv2_plan_and_preprocess"),
    "preprocess": ("nnunetv2.experiment_planning.plan_and_preprocess_entrypoints", "preprocess_entry",
                   "nnUNetv2_preprocess"),
    "train": ("nnunetv2.run.run_training", "run_training_entry", "nnUNetv2_train"),
    "predict": ("nnunetv2.inference.predict_from_raw_data", "predict_entry_point", "nnUNetv2_predict"),
}


#: Torch threads of CPU training with osteomet's trainers (read by the trainer in nnU-Net's training process).
THREADS_ENV = "OSTEOMET_NNUNET_TORCH_THREADS"


class NnunetNotInstalledError(OsteometError, ImportError):
    """nnunetv2 (an optional extra) is not installed in this environment."""


class NnunetRunError(OsteometError, RuntimeError):
    """An nnU-Net step exited with an error; the message ends with its last lines and the log path."""


def require_nnunetv2() -> str:
    """The installed nnunetv2 version, or a clear error with the install recipe."""
    if importlib.util.find_spec("nnunetv2") is None:
        raise NnunetNotInstalledError(
            "nnU-Net v2 is not installed (it is an optional extra). Install it into this environment with:\n  "
            + INSTALL_RECIPE + "\n(scripts/setup.sh does this; see the README's nnU-Net section)"
        )
    return metadata.version("nnunetv2")


def _class_names(subfolder: str, extra: Sequence[Path] = ()) -> set[str]:
    """Class names defined in nnunetv2's ``subfolder`` (and ``extra`` files), read from the source files."""
    import re

    spec = importlib.util.find_spec("nnunetv2")
    folders = [Path(p).joinpath(*subfolder.split("/")) for p in (spec.submodule_search_locations or [])] \
        if spec is not None else []
    files = [*extra, *(f for folder in folders for f in sorted(folder.rglob("*.py")))]
    pattern = re.compile(r"^class\s+(\w+)\s*[(:]", re.MULTILINE)
    names: set[str] = set()
    for file in files:
        try:
            names.update(pattern.findall(file.read_text(encoding="utf-8", errors="replace")))
        except OSError:
            continue
    return {n for n in names if not n.startswith(("_", "Abstract"))}


def trainer_names() -> set[str]:
    """The trainer classes nnU-Net can be told to use: osteomet's and those nnunetv2 ships.

    Read from the source files, without importing nnU-Net (and torch), so that a study config
    with a misspelt trainer is refused in a moment, before any stage runs.
    """
    ours = Path(__file__).parent / "trainers" / "osteomet_nnunet_trainers.py"
    return {n for n in _class_names("training/nnUNetTrainer", [ours]) if "Trainer" in n}


def planner_names() -> set[str]:
    """The experiment planners nnU-Net ships (ExperimentPlanner, the residual-encoder presets nnUNetPlannerResEnc*)."""
    return {n for n in _class_names("experiment_planning/experiment_planners") if "Planner" in n}


def _check_name(kind: str, name: str, names: set[str], hint: str) -> None:
    import difflib

    if name in names:
        return
    close = difflib.get_close_matches(name, sorted(names), n=3, cutoff=0.6)
    raise InputError(f"nnU-Net {kind} {name!r} does not exist"
                     + (f" (did you mean {', '.join(close)}?)" if close else "") + f"; {hint}")


def check_trainer(name: str) -> None:
    """Refuse a trainer class nnU-Net would not find (naming the close ones); needs nnunetv2 installed."""
    require_nnunetv2()
    names = trainer_names()
    ours = sorted(n for n in names if "Osteomet" in n)
    _check_name("trainer", name, names, f"nnU-Net's default is nnUNetTrainer, osteomet's short ones are "
                                        f"{', '.join(ours)}")


def check_planner(name: str) -> None:
    """Refuse an experiment planner nnU-Net does not ship; needs nnunetv2 installed."""
    require_nnunetv2()
    names = planner_names()
    _check_name("planner", name, names, f"nnU-Net's default is ExperimentPlanner; planners: "
                                        f"{', '.join(sorted(names))}")


def default_device() -> str:
    """'cuda' when a GPU is usable, else 'cpu' (nnU-Net's own default is cuda, which fails on CPU machines)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def nnunet_env(layout: NnunetLayout, *, num_processes: int = 1, n_proc_da: int | None = None) -> dict[str, str]:
    """The child's environment: the run's three trees and the worker counts."""
    env = dict(os.environ)
    env.update(layout.env())
    env["nnUNet_def_n_proc"] = str(max(1, num_processes))
    if n_proc_da is not None:
        env["nnUNet_n_proc_DA"] = str(max(0, n_proc_da))
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def run_entry_point(step: str, args: Sequence[str], layout: NnunetLayout, *, env: dict[str, str] | None = None,
                    echo: Callable[[str], None] | None = None) -> Path:
    """Run one nnU-Net entry point in a child process; return its log file, raise on failure."""
    require_nnunetv2()
    module, function, program = ENTRY_POINTS[step]
    command = [sys.executable, "-m", "osteomet.ct.nnunet._child", module, function, program, *[str(a) for a in args]]
    logs = layout.root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{time.strftime('%Y%m%d-%H%M%S')}-{step}.log"
    tail: list[str] = []
    with open(log, "w", encoding="utf-8") as handle:
        handle.write(f"$ {program} {' '.join(str(a) for a in args)}\n")
        handle.flush()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                   env=env if env is not None else nnunet_env(layout), cwd=layout.root,
                                   errors="replace")
        assert process.stdout is not None
        for line in process.stdout:
            handle.write(line)
            tail = (tail + [line.rstrip()])[-25:]
            if echo:
                echo(line.rstrip("\n"))
        returncode = process.wait()
    if returncode != 0:
        raise NnunetRunError(f"nnU-Net {program} failed (exit code {returncode}). Last lines:\n"
                             + "\n".join(tail) + f"\nFull log: {log}")
    return log


def plans_file(layout: NnunetLayout, plans: str = "nnUNetPlans") -> Path:
    return layout.preprocessed / f"{plans}.json"


def plan_and_preprocess(layout: NnunetLayout, *, configurations: Sequence[str] = ("3d_fullres",),
                        num_processes: int = 1, verify: bool = True, preprocess: bool = True,
                        planner: str = "ExperimentPlanner", gpu_memory_target_gb: float | None = None,
                        echo: Callable[[str], None] | None = None) -> Path:
    """nnU-Net's integrity check, fingerprint, experiment planning and (optionally) preprocessing.

    The splits file of the export is kept: nnU-Net only writes its own when none exists.
    Returns the plans file.
    """
    layout.read_record()
    args = ["-d", layout.dataset_id, "-pl", planner, "-npfp", num_processes, "--clean", "--no_pbar",
            "-c", *configurations, "-np", *([num_processes] * len(configurations))]
    if verify:
        args.append("--verify_dataset_integrity")
    if not preprocess:
        args.append("--no_pp")
    if gpu_memory_target_gb is not None:
        args += ["-gpu_memory_target", gpu_memory_target_gb]
    splits = layout.splits_file.read_bytes() if layout.splits_file.exists() else None
    run_entry_point("plan_and_preprocess", args, layout, env=nnunet_env(layout, num_processes=num_processes),
                    echo=echo)
    if splits is not None and layout.splits_file.read_bytes() != splits:  # never expected; guard the patient split
        raise NnunetRunError(f"{layout.splits_file}: nnU-Net changed the exported patient split")
    plans = _plans_name(planner, layout)
    return plans_file(layout, plans)


def _plans_name(planner: str, layout: NnunetLayout) -> str:
    # The default planner writes nnUNetPlans; others (ResEnc presets) write their own identifier.
    if planner == "ExperimentPlanner":
        return "nnUNetPlans"
    found = sorted(layout.preprocessed.glob("*Plans*.json"), key=lambda p: p.stat().st_mtime)
    return found[-1].stem if found else "nnUNetPlans"


def configuration_data_folder(layout: NnunetLayout, plans: str, configuration: str) -> Path:
    """The preprocessed data folder nnU-Net trains ``configuration`` from (checked against the plans)."""
    path = plans_file(layout, plans)
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NnunetLayoutError(f"{path}: no nnU-Net plans; run planning first") from None
    configs = content.get("configurations", {})
    if configuration not in configs:
        raise NnunetLayoutError(f"{path}: nnU-Net planned no configuration {configuration!r} for this dataset "
                                f"(planned: {', '.join(sorted(configs))})")
    config = configs[configuration]
    while "data_identifier" not in config and "inherits_from" in config:
        config = {**configs[config["inherits_from"]], **{k: v for k, v in config.items() if k != "inherits_from"}}
    return layout.preprocessed / config.get("data_identifier", f"{plans}_{configuration}")


def check_fold(layout: NnunetLayout, fold: int | str) -> None:
    """Refuse a fold the exported split does not define (nnU-Net would silently draw a random 80:20 split)."""
    if str(fold) == "all":
        return
    n = len(layout.read_splits())
    if not 0 <= int(fold) < n:
        raise InputError(f"fold {fold} is not in {layout.splits_file}, which defines folds 0-{n - 1} "
                         f"(the patient split of the export)")


def train(layout: NnunetLayout, *, configuration: str = "3d_fullres", fold: int | str = 0,
          trainer: str = "nnUNetTrainer", plans: str = "nnUNetPlans", device: str | None = None,
          num_processes: int = 1, n_proc_da: int | None = None, continue_training: bool = False,
          torch_threads: int | None = None, echo: Callable[[str], None] | None = None) -> Path:
    """Train one fold with nnU-Net's ``run_training``; plans and preprocesses first when needed.

    ``torch_threads``: torch's threads for CPU training with osteomet's trainers (None: the caller's
    ``OSTEOMET_NNUNET_TORCH_THREADS``, else nnU-Net's choice). Returns the fold's output folder
    (checkpoints, validation predictions, progress plot).
    """
    check_fold(layout, fold)
    if not plans_file(layout, plans).exists():
        if plans != "nnUNetPlans":
            raise NnunetLayoutError(f"{plans_file(layout, plans)}: no such plans; plan with that planner first")
        plan_and_preprocess(layout, configurations=(configuration,), num_processes=num_processes, echo=echo)
    if not configuration_data_folder(layout, plans, configuration).is_dir():
        run_entry_point("preprocess", ["-d", layout.dataset_id, "-plans_name", plans, "-c", configuration,
                                       "-np", num_processes, "--no_pbar"], layout,
                        env=nnunet_env(layout, num_processes=num_processes), echo=echo)
    device = device or default_device()
    args = [layout.dataset_id, configuration, fold, "-tr", trainer, "-p", plans, "-device", device]
    if continue_training:
        args.append("--c")
    env = nnunet_env(layout, num_processes=num_processes, n_proc_da=n_proc_da)
    if torch_threads is not None:
        env[THREADS_ENV] = str(int(torch_threads))
    run_entry_point("train", args, layout, env=env, echo=echo)
    return model_folder(layout, trainer, plans, configuration) / f"fold_{fold}"


def model_folder(layout: NnunetLayout, trainer: str, plans: str, configuration: str) -> Path:
    return layout.results / f"{trainer}__{plans}__{configuration}"


def predict(layout: NnunetLayout, output: str | os.PathLike[str] | None = None, *,
            input_dir: str | os.PathLike[str] | None = None, configuration: str = "3d_fullres",
            folds: Sequence[int | str] = (0,), trainer: str = "nnUNetTrainer", plans: str = "nnUNetPlans",
            checkpoint: str = "checkpoint_final.pth", device: str | None = None, disable_tta: bool = False,
            num_processes: int = 1, overwrite: bool = False, echo: Callable[[str], None] | None = None) -> Path:
    """nnU-Net inference (``nnUNetPredictor`` through ``nnUNetv2_predict``) on the test images by default.

    Returns the output folder of ``<case_id>.nii.gz`` label maps in each input image's geometry.
    """
    input_dir = Path(input_dir) if input_dir is not None else layout.raw / "imagesTs"
    if not input_dir.is_dir() or not any(input_dir.glob("*_0000.nii.gz")):
        raise MissingInputError(f"{input_dir}: no nnU-Net input images (<case>_0000.nii.gz) to predict")
    model = model_folder(layout, trainer, plans, configuration)
    for fold in folds:
        if not (model / f"fold_{fold}" / checkpoint).is_file():
            raise MissingInputError(f"{model / f'fold_{fold}' / checkpoint}: no trained model; "
                                    f"train fold {fold} first (`osteomet ct nnunet train`)")
    folds_tag = "-".join(str(f) for f in folds)
    output = Path(output) if output is not None else layout.root / "predictions" / f"{model.name}__folds-{folds_tag}"
    if output.exists() and any(p for p in output.glob("*.nii.gz")) and not overwrite:
        raise OutputExistsError(f"{output}: already holds predictions; choose another output or pass --overwrite")
    output.mkdir(parents=True, exist_ok=True)
    args = ["-i", input_dir.resolve(), "-o", output.resolve(), "-d", layout.dataset_id, "-c", configuration,
            "-tr", trainer, "-p", plans, "-f", *folds, "-chk", checkpoint, "-device", device or default_device(),
            "-npp", num_processes, "-nps", num_processes, "--disable_progress_bar"]
    if disable_tta:
        args.append("--disable_tta")
    run_entry_point("predict", args, layout, env=nnunet_env(layout, num_processes=num_processes), echo=echo)
    return output
