"""Study configs small enough for tests: the pipeline's plumbing, not its accuracy."""

from __future__ import annotations

from pathlib import Path

import yaml

#: A 1 x 1 x 2 grid of narrow ResNets, a few epochs: the pipeline's plumbing, not its accuracy.
GRID = {"depths": [10], "learning_rates": [1.0e-3], "optimizers": ["adam", "sgd"], "max_epochs": 3, "patience": 3,
        "batch_size": 8, "resnet": {"widen_factor": 0.25, "conv1_t_size": 3, "conv1_t_stride": 2,
                                    "no_max_pool": True}}


def study_file(folder: Path, **changes) -> Path:
    """A study.yaml for tests: a one-window UNETR trained for two epochs, a 2-cell grid, tiny radiomics."""
    from osteomet.mri.segmentation.config import load_segmentation_config

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "grid.yaml").write_text(yaml.safe_dump(GRID))
    unetr = load_segmentation_config("tiny").model_copy(update={"seg_size": (32, 32, 16), "patch_size": (32, 32, 16),
                                                               "max_epochs": 2, "samples_per_case": 1})
    (folder / "unetr.yaml").write_text(yaml.safe_dump(unetr.model_dump(mode="json")))
    study = {"seed": 0, "segmentation": {"masks": "unetr", "config": "unetr.yaml", "on_flagged": "manifest"},
             "radiomics": {"params": "tiny", "max_features": 5},
             "deep": {"config": "grid.yaml", "oof_folds": 2, "gradcam_patients": 1},
             "clinical_folds": 3, "fusion": {"mode": "features", "folds": 3},
             "evaluation": {"n_resamples": 200},
             "tuning": {"folds": 2, "grid": {"max_depth": [2, 3], "n_estimators": [30, 60]}},
             "explanations": {"top_k": 4}}
    for key, value in changes.items():
        study[key] = {**study.get(key, {}), **value} if isinstance(value, dict) else value
    path = folder / "study.yaml"
    path.write_text(yaml.safe_dump(study))
    return path
