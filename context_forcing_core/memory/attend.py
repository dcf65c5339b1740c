"""The per-pass attention core of the in-place read path: a pure tensor function, so it can run under torch.compile.

Python bookkeeping (which slots, which positions) stays in :mod:`.slow_fast`; this function only sees tensors: the
chunk's raw projections and angles, and views of the layer's buffers whose first rows already hold the history
(keys rotated to this chunk's positions, values as cached).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import Tensor

from ..models.attention import sdpa
from ..models.rope import apply_rope

AttendFn = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor], Tensor]


def attend_chunk(q: Tensor, k: Tensor, v: Tensor, cos: Tensor, sin: Tensor, keys: Tensor, values: Tensor) -> Tensor:
    """Rotate the chunk, write its K/V behind the history, attend.

    Args:
        q, k, v: (B, L, H, D) the chunk's raw projections (L = f * N tokens).
        cos, sin: (L, D / 2) the chunk's RoPE angles.
        keys: (B, M + L, H, D) view whose first M rows are the history's rotated keys; rows M.. are overwritten.
        values: (B, M + L, H, D) view whose first M rows are the history's values; rows M.. are overwritten.

    Returns:
        (B, L, H, D) attention output of the chunk's queries over history and chunk.

    """
    m = keys.shape[1] - q.shape[1]
    keys[:, m:].copy_(apply_rope(k, cos, sin))  # the chunk's own K/V: the only bytes a pass writes
    values[:, m:].copy_(v)
    return sdpa(apply_rope(q, cos, sin), keys, values)


@functools.cache
def compiled_attend_chunk() -> AttendFn:
    """:func:`attend_chunk` under ``torch.compile`` (one compiled function per process, shapes dynamic)."""
    return torch.compile(attend_chunk, dynamic=True)
