"""Short nnU-Net trainers for smoke runs and benchmarks on CPU (not for results you publish).

nnU-Net's default trainer runs 1000 epochs of 250 iterations, days on a CPU. These keep
everything else of nnU-Net (plans, augmentation, loss, deep supervision, validation and
export) and only shorten the schedule, so an end-to-end run finishes in minutes.
"""

from __future__ import annotations

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainer_OsteometTiny(nnUNetTrainer):
    """2 epochs x 10 iterations: checks that the whole pipeline runs."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 2
        self.num_iterations_per_epoch = 10
        self.num_val_iterations_per_epoch = 2


class nnUNetTrainer_OsteometShort(nnUNetTrainer):
    """30 epochs x 25 iterations: long enough to learn the synthetic lesions (benchmark)."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 30
        self.num_iterations_per_epoch = 25
        self.num_val_iterations_per_epoch = 5
