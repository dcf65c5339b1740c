"""Attention of the Wan DiT. Self-attention borrows its keys and positions from an :class:`AttentionContext`.

The block computes raw (normalised, not yet rotated) q, k, v and hands them to the context, which decides
which keys are visible and at which temporal positions. Dense contexts (bidirectional, block-causal) live
here; the memory-backed context lives in :mod:`context_forcing_core.memory`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .layers import RMSNorm
from .rope import apply_rope, rope_angles

Grid = tuple[int, int, int]
"""Token grid (frames, rows, columns) of the tokens being computed."""


class AttentionContext(Protocol):
    """Decides what each self-attention layer attends to."""

    def attend(self, layer: int, q: Tensor, k: Tensor, v: Tensor, grid: Grid) -> Tensor:
        """Attention output for the current tokens.

        Args:
            layer: block index.
            q, k, v: (B, L, H, D) raw projections of the current tokens (after q/k RMS norm, before RoPE).
            grid: (F, h, w) with L = F * h * w.

        Returns:
            (B, L, H, D).

        """
        ...


def sdpa(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """Scaled dot-product attention on (B, L, H, D) tensors; ``mask`` (Lq, Lk) is True where attention is allowed."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
    return out.transpose(1, 2)


def block_causal_mask(num_frames: int, tokens_per_frame: int, chunk_frames: int, device=None) -> Tensor:
    """Boolean (L, L) mask: a token sees every token of its own chunk and of earlier chunks.

    Args:
        num_frames: latent frames F (a multiple of ``chunk_frames``).
        tokens_per_frame: tokens per latent frame.
        chunk_frames: latent frames per chunk.

    """
    chunk = torch.arange(num_frames, device=device) // chunk_frames
    chunk = chunk.repeat_interleave(tokens_per_frame)  # (L,)
    return chunk[None, :] <= chunk[:, None]


@dataclass(kw_only=True, slots=True)
class DenseAttention:
    """All current tokens attend to each other at absolute frame positions 0..F-1, optionally masked."""

    split: tuple[int, int, int]
    """RoPE head split (frame, height, width)."""
    theta: float = 10000.0
    """RoPE base."""
    chunk_frames: int | None = None
    """Latent frames per chunk for block-causal attention; None for bidirectional."""

    def attend(self, layer: int, q: Tensor, k: Tensor, v: Tensor, grid: Grid) -> Tensor:
        """See :class:`AttentionContext`."""
        f, h, w = grid
        cos, sin = rope_angles(torch.arange(f, device=q.device), h, w, self.split, self.theta)
        mask = None
        if self.chunk_frames is not None:
            mask = block_causal_mask(f, h * w, self.chunk_frames, device=q.device)
        return sdpa(apply_rope(q, cos, sin), apply_rope(k, cos, sin), v, mask)


class _Projections(nn.Module):
    """q, k, v, o projections and q/k RMS norms; key names as in the Wan checkpoints."""

    def __init__(self, dim: int, num_heads: int, eps: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = RMSNorm(dim, eps)
        self.norm_k = RMSNorm(dim, eps)


class SelfAttention(_Projections):
    """Wan's self-attention; what it attends to is decided by an :class:`AttentionContext`."""

    def forward(self, x: Tensor, layer: int, grid: Grid, context: AttentionContext) -> Tensor:
        """(B, L, dim) -> (B, L, dim); q/k normalised over the full width before the head split."""
        q = self.norm_q(self.q(x)).unflatten(-1, (self.num_heads, -1))  # (B, L, H, D)
        k, v = self.kv(x)
        return self.o(context.attend(layer, q, k, v, grid).flatten(-2))

    def kv(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(B, L, dim) -> the raw keys (normalised, not rotated) and values (B, L, H, D) that :meth:`forward` hands
        to the context.
        """
        heads = (self.num_heads, -1)
        return self.norm_k(self.k(x)).unflatten(-1, heads), self.v(x).unflatten(-1, heads)


class CrossAttention(_Projections):
    """Text cross-attention; the text keys and values come precomputed from :meth:`text_kv`."""

    def text_kv(self, text: Tensor) -> tuple[Tensor, Tensor]:
        """(B, Lt, dim) embedded text -> k, v (B, Lt, H, D)."""
        heads = (self.num_heads, -1)
        return self.norm_k(self.k(text)).unflatten(-1, heads), self.v(text).unflatten(-1, heads)

    def forward(self, x: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """(B, L, dim) attending to text k, v (B, Lt, H, D) -> (B, L, dim). No padding mask, as upstream."""
        q = self.norm_q(self.q(x)).unflatten(-1, (self.num_heads, -1))
        return self.o(sdpa(q, k, v).flatten(-2))
