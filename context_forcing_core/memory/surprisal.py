"""Surprisal-based consolidation (CF Eq. 7): a chunk whose keys look unlike the reference chunk is new
information and is promoted to slow memory.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .config import MemoryConfig


def key_summary(k: Tensor) -> Tensor:
    """Token-mean of a chunk's raw (pre-RoPE) keys, flattened over heads.

    Args:
        k: (B, L, H, D) keys of one layer for one chunk.

    Returns:
        (B, H * D) float32.

    """
    return k.float().mean(dim=1).flatten(1)


def similarity(a: Tensor, b: Tensor) -> Tensor:
    """Cosine similarity of two (B, H * D) summaries, averaged over the batch (one decision per batch) -> 0-dim.

    A tensor, not a float: the memory reads every layer's similarity to the host at once, once per chunk.
    """
    return torch.nn.functional.cosine_similarity(a, b, dim=-1).mean()


def is_checked(cfg: MemoryConfig, chunk: int) -> bool:
    """Whether chunk ``chunk`` is a consolidation candidate.

    Chunks inside the first fast window (or holding sink frames) are never consolidated; after that a chunk is
    checked when its index is a multiple of ``consolidate_every``.
    """
    if cfg.slow_select == "none" or not cfg.bounded:
        return False
    first_frame = chunk * cfg.chunk_frames
    return first_frame >= cfg.sink_frames + cfg.fast_frames and chunk % cfg.consolidate_every == 0


def decide(cfg: MemoryConfig, sim: float | None) -> bool:
    """Consolidate a checked chunk: always for "uniform"; for "surprisal" when sim < tau (no reference: yes)."""
    if cfg.slow_select == "uniform":
        return True
    return sim is None or sim < cfg.tau
