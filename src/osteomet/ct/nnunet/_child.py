"""What the child process of :mod:`osteomet.ct.nnunet.run` executes: one nnU-Net entry point.

nnU-Net finds a trainer by importing every module under ``nnunetv2.training.nnUNetTrainer``
in turn. One of them (Primus) needs ``timm``, which needs ``torchvision``; neither is part of
the nnU-Net extra here (they would replace the pinned torch). With the stock search, any
trainer other than the plain ``nnUNetTrainer`` then fails on that import. The lookup used
here returns osteomet's trainers directly and otherwise walks the same modules, skipping the
ones that cannot be imported; anything it cannot find goes to nnU-Net's own search (which
also covers ``nnUNet_extTrainer``) and its error message.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from typing import Any

OSTEOMET_TRAINERS_MODULE = "osteomet.ct.nnunet.trainers.osteomet_nnunet_trainers"


def find_trainer_class(name: str) -> Any:
    """The nnU-Net trainer class called ``name`` (osteomet's, nnU-Net's importable ones, then nnU-Net's search)."""
    from nnunetv2.utilities import find_objects

    ours = importlib.import_module(OSTEOMET_TRAINERS_MODULE)
    if hasattr(ours, name):
        return getattr(ours, name)
    import nnunetv2.training.nnUNetTrainer as package

    for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".", onerror=lambda _name: None):
        if info.ispkg:
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError:
            continue
        if hasattr(module, name):
            return getattr(module, name)
    original = _ORIGINAL_FIND or find_objects.recursive_find_trainer_class_by_name
    return original(name)


_ORIGINAL_FIND = None


def _install_trainer_lookup() -> None:
    global _ORIGINAL_FIND
    from nnunetv2.utilities import find_objects

    _ORIGINAL_FIND = find_objects.recursive_find_trainer_class_by_name
    find_objects.recursive_find_trainer_class_by_name = find_trainer_class
    for module in ("nnunetv2.run.run_training", "nnunetv2.inference.predict_from_raw_data"):
        loaded = importlib.import_module(module)
        if hasattr(loaded, "recursive_find_trainer_class_by_name"):
            loaded.recursive_find_trainer_class_by_name = find_trainer_class


def main(module: str, function: str, program: str, args: list[str]) -> None:
    """Run nnU-Net's ``module.function`` as if called as ``program args...``."""
    if program in ("nnUNetv2_train", "nnUNetv2_predict"):
        _install_trainer_lookup()
    entry = getattr(importlib.import_module(module), function)
    sys.argv = [program, *args]
    entry()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:])
