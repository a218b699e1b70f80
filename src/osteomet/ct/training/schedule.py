"""The training-schedule settings both CT slice trainers share (detection and segmentation configs extend it).

How long and how fast a network trains, which epoch's weights inference keeps and how often
validation runs mean the same for a tile classifier and a patch segmenter, so they are
declared and checked once; each task keeps its own defaults (detection: a 1e-4
learning rate over 60 epochs, segmentation: 1e-3 over 100) and its own data settings. How the
trainers apply them is in :mod:`osteomet.training.loop`.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from osteomet.ct.slices.config import SliceConfig
from osteomet.errors import InputError


class TrainingSchedule(BaseModel):
    """Slices, epochs, optimiser and kept weights of a CT slice trainer; ``score`` names its validation metric."""

    model_config = ConfigDict(extra="forbid")
    score: ClassVar[str] = "validation score"

    slices: SliceConfig = Field(default_factory=SliceConfig)
    batch_size: int = Field(16, ge=1)
    max_epochs: int = Field(100, ge=1)
    patience: int = Field(10, ge=1, description="epochs without a better validation score before stopping")
    weights: Literal["best", "final"] = Field("best", description=(
        "weights kept for inference: the epoch of best validation score (early stopping with patience), or the "
        "final epoch of the full schedule, as nnU-Net keeps (validation then only monitors); with a few "
        "validation patients the best epoch is picked by noise, often one of the first"))
    validate_every: int = Field(1, ge=1, description=(
        "with weights: final, validate every this many epochs and at the last (whose validation sets the "
        "detection threshold and the reported score); a pass over the validation patients costs a third to 40% of "
        "a CPU epoch"))
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    scheduler: Literal["cosine", "none"] = Field("cosine", description="learning rate per epoch: cosine from "
                                                  "learning_rate towards 0 over max_epochs, or constant")
    flip_prob: float = Field(0.5, ge=0, le=1, description="random left-right flip of the training inputs")
    seed: int = 0

    @model_validator(mode="after")
    def _check_schedule(self) -> "TrainingSchedule":
        """Refuse sparse validation with ``weights: best``: picking the best epoch needs every epoch's score."""
        if self.validate_every > 1 and self.weights != "final":
            raise InputError(f"validate_every: {self.validate_every} needs weights: final (early stopping on the "
                             f"best {self.score} validates every epoch)")
        return self
