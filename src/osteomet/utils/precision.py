"""Arithmetic precision of network training: float32, or bfloat16 autocast where the hardware does it natively.

Why: on CPUs with AVX-512 BF16 or AMX tiles (Intel Sapphire Rapids and later, AMD Zen 4 and
later) oneDNN runs bfloat16 convolutions at about twice the float32 rate (3D-ResNet training
steps of the tiny grid, one thread: 0.11 s against 0.24 s at depth 10, 0.21 against 0.44 at 18);
on CPUs without them bfloat16 is emulated and slower than float32. ``auto`` therefore takes
bfloat16 exactly where it is native, and the choice (with why) is recorded beside each run, since
the same seed gives slightly different weights under the two. The loss and optimiser stay in
float32 (autocast casts only the matrix products and convolutions), so no loss scaling is needed,
unlike float16.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, ContextManager, Literal

Precision = Literal["auto", "fp32", "bf16"]


def native_bf16(device_type: str) -> tuple[bool, str]:
    """Whether ``device_type`` ('cpu', 'cuda') runs bfloat16 natively, and what says so."""
    import torch

    if device_type == "cuda":
        ok = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
        return ok, "the GPU supports bfloat16" if ok else "the GPU has no bfloat16 support"
    if device_type != "cpu":
        return False, f"no bfloat16 check for {device_type!r}"
    flags = [name for name, check in (("AVX-512 BF16", "_is_avx512_bf16_supported"), ("AMX", "_is_amx_tile_supported"))
             if getattr(torch.cpu, check, lambda: False)()]
    return (True, f"the CPU has {' and '.join(flags)}") if flags else (False, "the CPU has neither AVX-512 BF16 nor AMX")


def resolve_precision(setting: Precision, device_type: str) -> dict[str, str]:
    """{"precision": "fp32" | "bf16", "reason": ...} for a configured ``setting`` on ``device_type``."""
    if setting == "fp32":
        return {"precision": "fp32", "reason": "configured"}
    native, why = native_bf16(device_type)
    if setting == "bf16":
        return {"precision": "bf16", "reason": "configured" + ("" if native else f" ({why}: emulated, slower)")}
    return {"precision": "bf16" if native else "fp32", "reason": f"auto: {why}"}


def autocast(precision: str, device_type: str) -> ContextManager[Any]:
    """The autocast block of a training step under ``precision`` ("bf16" or "fp32")."""
    if precision != "bf16":
        return nullcontext()
    import torch

    return torch.autocast(device_type=device_type, dtype=torch.bfloat16)


__all__ = ["Precision", "autocast", "native_bf16", "resolve_precision"]
