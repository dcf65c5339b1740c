"""Memory budget of a rollout, checked before anything is allocated.

A rollout holds the K/V cache of its memory (sink + slow + fast frames, every layer), one chunk's activations, and
(for :func:`~context_forcing_core.diffusion.sampler.generate` or a caller that keeps every chunk) the latents of the
whole video. :func:`check_budget` compares that with what the device can give and refuses with a message saying how
much is needed, how much there is, and what to lower.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch

from .memory.config import MemoryConfig
from .models.config import WanConfig

GB = 1024**3


@dataclass(frozen=True, slots=True)
class MemoryNeed:
    """Bytes a rollout needs, by part."""

    cache: int
    """K/V of every attended frame, all layers."""
    working: int
    """Activations of one chunk (an estimate: a few (tokens, dim) and (tokens, ffn_dim) buffers)."""
    latents: int
    """The whole video's float32 latents, kept by the caller (0 when the caller keeps none)."""

    @property
    def total(self) -> int:
        """All parts together."""
        return self.cache + self.working + self.latents


class MemoryBudgetError(ValueError):
    """The requested rollout does not fit the memory available."""


def kv_cache_bytes(config: WanConfig, memory: MemoryConfig, latent_size: tuple[int, int], num_latent_frames: int,
                   dtype: torch.dtype, batch: int = 1) -> int:
    """Bytes of K/V buffers the memory allocates over a rollout: 3 (K, V and the keys rotated to the chunk's
    positions, ``LayerCache.rotated``) x layers x frames x tokens x dim x element.

    A bounded memory allocates its whole capacity with the first chunk (``memory/state.py``), whatever the length.
    """
    frames = memory.capacity or num_latent_frames
    tokens = (latent_size[0] // config.patch_size[1]) * (latent_size[1] // config.patch_size[2])
    element = torch.finfo(dtype).bits // 8 if dtype.is_floating_point else 4
    return 3 * batch * config.num_layers * frames * tokens * config.dim * element


def rollout_need(config: WanConfig, memory: MemoryConfig, latent_size: tuple[int, int], num_latent_frames: int,
                 dtype: torch.dtype, *, batch: int = 1, keep_latents: bool = True) -> MemoryNeed:
    """What a rollout of ``num_latent_frames`` at latent (H, W) ``latent_size`` needs; see :class:`MemoryNeed`."""
    tokens = memory.chunk_frames * (latent_size[0] // config.patch_size[1]) * (latent_size[1] // config.patch_size[2])
    working = 4 * batch * tokens * (4 * config.dim + config.ffn_dim)  # float32 (tokens, dim) x 4 + (tokens, ffn)
    latents = 4 * batch * config.out_channels * num_latent_frames * latent_size[0] * latent_size[1]
    return MemoryNeed(cache=kv_cache_bytes(config, memory, latent_size, num_latent_frames, dtype, batch),
                      working=working, latents=latents if keep_latents else 0)


def available_bytes(device: torch.device | str) -> int | None:
    """Bytes the device can give now: free VRAM (plus PyTorch's cached blocks) or the RAM the OS reports available;
    None when unknown.
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    if device.type != "cpu":
        return None
    with contextlib.suppress(ImportError):
        import psutil

        return int(psutil.virtual_memory().available)
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return None


def check_budget(need: MemoryNeed, available: float | None, *, where: str,
                 lower: str = "the video length, the resolution or the memory sizes (sink, slow, fast)") -> None:
    """Raise :class:`MemoryBudgetError` when ``need`` exceeds ``available`` bytes (None: unknown, not checked)."""
    if available is None or need.total <= available:
        return
    raise MemoryBudgetError(
        f"this rollout needs {need.total / GB:.2f} GB (K/V cache {need.cache / GB:.2f} GB + latents "
        f"{need.latents / GB:.2f} GB + working {need.working / GB:.2f} GB) but {where} has {available / GB:.2f} GB "
        f"available; lower {lower}")
