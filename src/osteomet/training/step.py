"""One optimisation step, with or without mixed precision."""

from __future__ import annotations

import torch

from osteomet.utils.precision import autocast


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss_fn, x: torch.Tensor, y: torch.Tensor,
               *, scaler: torch.amp.GradScaler | None = None, precision: str = "fp32") -> float:
    """One optimisation step on a batch; returns its loss.

    With a ``scaler`` the forward pass runs under float16 autocast exactly when the scaler is
    enabled (mixed precision on CUDA); without one it is a float32 step, or with ``precision``
    "bf16" a bfloat16-autocast one (:mod:`osteomet.utils.precision`; the loss in float32).
    """
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        with autocast(precision, x.device.type):
            out = model(x)
        loss = loss_fn(out.float() if precision == "bf16" else out, y)
        loss.backward()
        optimizer.step()
    else:
        with torch.autocast(device_type=x.device.type, dtype=torch.float16, enabled=scaler.is_enabled()):
            loss = loss_fn(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    return float(loss.detach())
