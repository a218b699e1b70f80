"""The rule both CT trainers' configs share for how often validation runs (see :func:`osteomet.ct.train_state.validates`)."""

from __future__ import annotations

from osteomet.errors import InputError


def check_validate_every(validate_every: int, weights: str, score: str) -> None:
    """Refuse sparse validation with ``weights: best``: picking the best epoch needs every epoch's ``score``."""
    if validate_every > 1 and weights != "final":
        raise InputError(f"validate_every: {validate_every} needs weights: final (early stopping on the best "
                         f"{score} validates every epoch)")
