"""Short nnU-Net trainers for smoke runs and benchmarks (not for results you publish).

nnU-Net's default trainer runs 1000 epochs of 250 iterations, days on a CPU. These keep
everything else of nnU-Net (plans, network, augmentation, loss, deep supervision, validation
and export) and only shorten the schedule, so an end-to-end run finishes in minutes. The CPU
trainer also caps the batch size: nnU-Net sizes batches for a GPU's memory (dozens of 2D
slices), which on a CPU costs seconds per iteration; fewer, smaller steps learn more per
second there.

On a CPU, nnU-Net gives torch one thread per core. On a machine whose cores are shared with
other work, that oversubscribes them: a training step measured 6x slower with 2 threads than
with 1 on a busy 2-core machine. ``OSTEOMET_NNUNET_TORCH_THREADS`` (read when a trainer
starts; the training child process inherits it) sets torch's thread count for CPU training.
"""

from __future__ import annotations

import math

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from osteomet.ct.nnunet.run import THREADS_ENV
from osteomet.utils.cores import count_from_env


def cpu_threads_from_env() -> int | None:
    """Torch threads asked for through ``OSTEOMET_NNUNET_TORCH_THREADS`` (None: keep nnU-Net's choice)."""
    return count_from_env(THREADS_ENV, "threads")


class _OsteometScheduleTrainer(nnUNetTrainer):
    """nnU-Net with a shorter schedule set by class attributes (the subclasses only set numbers).

    ``max_batch_size`` (None: the plans' batch size) caps the batch; ``oversample_foreground``
    (None: nnU-Net's 0.33) is the share of patches centred on a lesion, raised for short runs
    so that the rare lesion class is seen often enough to be learnt.
    """

    epochs: int = 1000
    iterations_per_epoch: int = 250
    val_iterations_per_epoch: int = 50
    max_batch_size: int | None = None
    oversample_foreground: float | None = None
    #: False: no mirroring at inference (validation and prediction), 4-8x fewer forward passes on a CPU
    inference_mirroring: bool = True
    #: The lesion probability the untrained network outputs (None: nnU-Net's initialisation). A smoke run's
    #: network has learnt nothing; starting from the lesions' prior it predicts background rather than half
    #: of every CT, which would make every later stage (lesion analysis, radiomics of each mask) crawl.
    lesion_prior: float | None = None

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = self.epochs
        self.num_iterations_per_epoch = self.iterations_per_epoch
        self.num_val_iterations_per_epoch = self.val_iterations_per_epoch
        if self.oversample_foreground is not None:
            self.oversample_foreground_percent = self.oversample_foreground
        threads = cpu_threads_from_env()
        if threads is not None and self.device.type == "cpu":
            torch.set_num_threads(threads)
            self.print_to_log_file(f"osteomet: {threads} torch thread(s)", also_print_to_console=True)

    def initialize(self) -> None:
        fresh = not self.was_initialized
        super().initialize()
        if fresh and self.lesion_prior is not None:  # a checkpoint loaded after this replaces the bias again
            logit = math.log(self.lesion_prior / (1.0 - self.lesion_prior))
            with torch.no_grad():
                for module in self.network.modules():
                    for layer in getattr(module, "seg_layers", ()):  # the output convolution of every resolution
                        layer.bias.zero_()
                        layer.bias[1:] = logit

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):  # nnU-Net's spelling
        configured = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        if not self.inference_mirroring:
            self.inference_allowed_mirroring_axes = None  # saved in the checkpoint, so prediction follows
        return configured

    def _set_batch_size_and_oversample(self) -> None:
        super()._set_batch_size_and_oversample()
        if self.max_batch_size is not None and not self.is_ddp:
            self.batch_size = min(self.batch_size, self.max_batch_size)
            self.print_to_log_file(f"osteomet: batch size capped at {self.batch_size}", also_print_to_console=True)


class nnUNetTrainer_OsteometSmoke(_OsteometScheduleTrainer):
    """1 epoch x 2 iterations of 2 patches, no test-time mirroring: the shortest complete run (tests; learns nothing,
    and predicts (almost) no lesion: its output starts at a 0.1% lesion prior)."""

    epochs = 1
    iterations_per_epoch = 2
    val_iterations_per_epoch = 1
    max_batch_size = 2
    inference_mirroring = False
    lesion_prior = 1e-3


class nnUNetTrainer_OsteometTiny(_OsteometScheduleTrainer):
    """2 epochs x 10 iterations: checks that the whole pipeline runs (learns nothing)."""

    epochs = 2
    iterations_per_epoch = 10
    val_iterations_per_epoch = 2


class nnUNetTrainer_OsteometCPU(_OsteometScheduleTrainer):
    """18 epochs x 25 iterations of 8 patches: learns the synthetic lesions in ~5 minutes on a CPU core (2d)."""

    epochs = 18
    iterations_per_epoch = 25
    val_iterations_per_epoch = 2
    max_batch_size = 8
    oversample_foreground = 0.5


class nnUNetTrainer_OsteometShort(_OsteometScheduleTrainer):
    """50 epochs x 50 iterations at the plans' batch size: the benchmark's GPU schedule."""

    epochs = 50
    iterations_per_epoch = 50
    val_iterations_per_epoch = 5
    oversample_foreground = 0.5
