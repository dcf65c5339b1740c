"""Mixed-precision helper: bfloat16 autocast on CUDA only; the toy presets train in float32 on CPU."""

from __future__ import annotations

from contextlib import nullcontext

import pytest
import torch
from conftest import random_model

from training.precision import autocast_context, autocast_dtype


@pytest.mark.parametrize(("device", "dtype", "expected"), [
    ("cpu", "float32", None), ("cpu", "bfloat16", None), ("cuda", "float32", None),
    ("cuda", "bfloat16", torch.bfloat16), ("cuda:1", "bfloat16", torch.bfloat16),
])
def test_autocast_dtype_selection(device, dtype, expected):
    assert autocast_dtype(device, dtype) == expected


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="dtype"):
        autocast_dtype("cuda", "float16")
    with pytest.raises(ValueError, match="device"):
        autocast_dtype("gpu0", "bfloat16")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_cpu_is_a_float32_no_op(dtype):
    model = random_model()
    x, t = torch.randn(1, model.config.in_channels, 3, 4, 4), torch.full((1,), 300.0)
    text = torch.randn(1, 3, model.config.text_dim)
    reference = model(x, t, text)
    ctx = autocast_context("cpu", dtype)
    assert isinstance(ctx, nullcontext)
    with ctx:
        assert not torch.is_autocast_enabled("cpu")
        out = model(x, t, text)
    assert out.dtype == torch.float32 and torch.equal(out, reference)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bfloat16_autocast_keeps_the_float32_parts():
    model = random_model().cuda()
    x, t = torch.randn(1, model.config.in_channels, 3, 4, 4, device="cuda"), torch.full((1,), 300.0, device="cuda")
    text = torch.randn(1, 3, model.config.text_dim, device="cuda")
    e_ref, e0_ref = model._time(t, 1, 3, 3)
    full = model(x, t, text)
    with autocast_context("cuda", "bfloat16"):
        assert torch.is_autocast_enabled("cuda")
        assert (x.flatten(1) @ x.flatten(1).T).dtype == torch.bfloat16
        e, e0 = model._time(t, 1, 3, 3)
        out = model(x, t, text)
    assert torch.equal(e, e_ref) and torch.equal(e0, e0_ref), "time embedding and modulation stay float32"
    assert out.dtype == torch.float32, "the head runs in float32"
    assert not torch.equal(out, full) and torch.allclose(out, full, rtol=0.05, atol=0.05)
