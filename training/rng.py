"""Counter-based randomness of the training loop: one generator per (seed, step, global micro-batch, purpose).

A run's draws depend only on *which* global micro-batch they belong to, never on which rank or in which order it
is processed, so one process with ``grad_accum = 2`` and two processes with ``grad_accum = 1`` draw the same noise,
timesteps and exit steps, and a resume needs no saved generator state (the step alone reproduces everything).
"""

from __future__ import annotations

import hashlib

import torch

STEP_LEVEL = "step"
"""Purpose of the draws every rank shares within a step (e.g. the Stage 2 curriculum rollout length)."""


def micro_seed(seed: int, step: int, index: int, purpose: str) -> int:
    """A 64-bit seed from a stable hash (BLAKE2b) of the four values; identical across processes and Python runs."""
    for name, value in (("step", step), ("index", index)):
        if value < 0:
            raise ValueError(f"{name} must be non-negative, got {value}")
    key = f"{seed}/{step}/{index}/{purpose}".encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")


def micro_generator(seed: int, step: int, index: int, purpose: str) -> torch.Generator:
    """A fresh CPU generator for the draws of one global micro-batch.

    Args:
        seed: the run's seed (``TrainConfig.seed``).
        step: the optimiser step the draws belong to.
        index: global micro-batch index g in [0, world_size * grad_accum); 0 for step-level draws.
        purpose: what the draws are for ("generator", "critic", "teacher", or :data:`STEP_LEVEL`), so the updates
            of one step draw independent streams.

    Returns:
        A ``torch.Generator`` on the CPU, seeded from :func:`micro_seed`.

    """
    return torch.Generator().manual_seed(micro_seed(seed, step, index, purpose))


def step_generator(seed: int, step: int) -> torch.Generator:
    """The generator of the draws all ranks share in ``step`` (they agree without communicating)."""
    return micro_generator(seed, step, 0, STEP_LEVEL)
