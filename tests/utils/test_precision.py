"""Training arithmetic: what ``auto`` picks on which hardware, and that a bfloat16 step really runs in bfloat16 and
still learns."""

from __future__ import annotations

import pytest
import torch

from osteomet.training.step import train_step
from osteomet.utils import precision as module
from osteomet.utils.precision import resolve_precision


@pytest.mark.parametrize("native", [True, False])
def test_auto_takes_bf16_exactly_where_the_cpu_runs_it_natively(monkeypatch, native):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    chosen = resolve_precision("auto", "cpu")
    assert chosen["precision"] == ("bf16" if native else "fp32")
    assert chosen["reason"] == ("auto: the CPU has AVX-512 BF16" if native
                                else "auto: the CPU has neither AVX-512 BF16 nor AMX")
    assert resolve_precision("fp32", "cpu") == {"precision": "fp32", "reason": "configured"}
    forced = resolve_precision("bf16", "cpu")
    assert forced["precision"] == "bf16" and ("emulated" in forced["reason"]) == (not native)


def test_the_real_cpu_check_agrees_with_torch():
    native, why = module.native_bf16("cpu")
    flags = (torch.cpu._is_avx512_bf16_supported(), torch.cpu._is_amx_tile_supported())
    assert native == any(flags) and why.startswith("the CPU has")


@pytest.mark.parametrize("precision, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_a_step_runs_in_the_precision_asked_and_learns(precision, dtype):
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    y = (x[:, :1] > 0).float()
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    seen = []
    model[0].register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    losses = [train_step(model, optimizer, loss_fn, x, y, precision=precision) for _ in range(60)]
    assert set(seen) == {dtype}
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the weights stay float32
    assert losses[-1] < 0.5 * losses[0]
