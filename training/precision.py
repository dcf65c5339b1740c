"""Mixed precision for the training loop: a bfloat16 autocast on CUDA, nothing on CPU.

The toy presets train in float32 on CPU: ``autocast_context("cpu", ...)`` is a null context, so their loss curves
are bit-stable and independent of CPU bfloat16 support. On CUDA with ``dtype="bfloat16"`` the forward runs under
``torch.autocast("cuda", torch.bfloat16)``; the intended pairing is float32 parameters and optimiser state (master
weights), since AdamW updates of bfloat16 parameters lose most small steps. Matmuls, convolutions and attention go
to bfloat16, while Wan's float32 parts stay float32 by construction (the model's
norms compute in float32, the residual stream, modulation and gates are float32, and the time embedding and the
head run with autocast suspended, see :func:`~context_forcing_core.models.layers.autocast_off`). bfloat16 has
float32's exponent range, so no loss scaling is needed. Cached K/V are stored in the dtype the keys were computed
in (bfloat16 under autocast).

Usage::

    with autocast_context(cfg.device, cfg.dtype):
        rollout = self_rollout(...)
        loss = ...
    loss.backward()  # outside the autocast, as PyTorch recommends
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

DTYPES = ("float32", "bfloat16")
"""Compute dtypes the loop accepts (the names of :attr:`TrainConfig.dtype`)."""


def autocast_dtype(device: str, dtype: str) -> torch.dtype | None:
    """The autocast dtype for a run, or None for plain full precision.

    Args:
        device: a torch device string ("cpu", "cuda", "cuda:1").
        dtype: "float32" or "bfloat16".

    Returns:
        ``torch.bfloat16`` for a CUDA device with "bfloat16"; None otherwise (CPU always trains in float32).

    Raises:
        ValueError: an unknown dtype or a malformed device string.

    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}; allowed: {', '.join(DTYPES)}")
    try:
        kind = torch.device(device).type
    except RuntimeError as err:
        raise ValueError(f"not a torch device: {device!r}") from err
    return torch.bfloat16 if kind == "cuda" and dtype == "bfloat16" else None


def autocast_context(device: str, dtype: str) -> AbstractContextManager:
    """Context for the forward passes of a training step.

    Args:
        device: a torch device string.
        dtype: "float32" or "bfloat16".

    Returns:
        ``torch.autocast("cuda", dtype=torch.bfloat16)`` for a CUDA device with "bfloat16", else a null context.

    """
    fast = autocast_dtype(device, dtype)
    return nullcontext() if fast is None else torch.autocast("cuda", dtype=fast)
