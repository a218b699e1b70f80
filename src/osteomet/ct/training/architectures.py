"""Per-architecture settings of a CT training config: what one network changes from the shared ones.

Why: on a CPU the method's networks differ several-fold in cost per sample (UNet : residual UNet :
AttentionUnet 1 : 2.3 : 6; ResNet34 : DenseNet121 : EfficientNet-B0 about 1 : 2 : 2), so one time
budget needs a different width or sample count per network. Epochs and their learning-rate
schedule stay shared, so ``--max-epochs`` still applies to all.
"""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from osteomet.errors import InputError

Config = TypeVar("Config", bound=BaseModel)


class ArchitectureSettings(BaseModel):
    """What one network changes from the shared settings; each task adds its own fields."""

    model_config = ConfigDict(extra="forbid")

    hard_negatives: int | None = Field(None, ge=0, description="mined hard negatives per epoch instead of the shared")


def for_architecture(config: Config, architecture: str, own_model: type[ArchitectureSettings]) -> Config:
    """``config`` with ``config.per_architecture[architecture]`` applied (itself when it has none)."""
    own = config.per_architecture.get(architecture)  # type: ignore[attr-defined]
    if own is None:
        return config
    try:
        own = own_model.model_validate(own)  # also when set by model_copy(update=...)
        return type(config).model_validate(
            {**config.model_dump(), **own.model_dump(exclude_none=True), "per_architecture": {}})
    except ValidationError as err:
        reasons = "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in err.errors())
        raise InputError(f"per_architecture: {architecture}: {reasons}") from None
