"""A loaded student with what inference needs around it: time scale, latent size, and for toy-world models the
bundled text encoder and codec.

Wan students take umT5 states from outside (ComfyUI's text encoder); toy-world students carry their own (the
toy text encoder and codec are deterministic functions, nothing is stored besides the DiT weights).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .budget import MemoryNeed, kv_cache_bytes, rollout_need
from .diffusion.settings import SECONDS, check_pixels
from .latents import wan_denormalize
from .memory.config import MemoryConfig, memory_preset
from .models.config import WanConfig
from .models.family import NOT_RECOGNISED, Recognition
from .models.loading import Source, load_recognised
from .models.lora import LoraSource
from .models.wan import WanModel
from .toyworld.codec import ToyCodec
from .toyworld.constants import FRAMES_PER_SECOND
from .toyworld.text import ToyTextEncoder

BUNDLED_TOY_STUDENT = Path(__file__).parent / "toyworld" / "assets" / "toy_student.safetensors"
"""The toy student shipped with the package: the scene world's Stage 2 student (``toy-scenes-stage2``)."""
WAN_LATENT_FRAMES_PER_SECOND = 4
"""Wan2.1 video: 16 fps, 4 video frames per latent frame."""
WAN_FRAMES_PER_LATENT = 4
"""Video frames one Wan VAE latent frame decodes to (the first latent frame: 1)."""
WAN_FPS = WAN_LATENT_FRAMES_PER_SECOND * WAN_FRAMES_PER_LATENT
"""Frame rate of decoded Wan video."""


@dataclass(kw_only=True, slots=True)
class Student:
    """A causal student ready for :func:`~context_forcing_core.diffusion.sampler.stream`."""

    model: WanModel
    """The DiT in eval mode."""
    name: str
    """Where it came from (file name), for messages."""
    toy: bool
    """True for a toy-world model (48-channel toy-codec latents, bundled toy text encoder)."""
    family: Recognition = NOT_RECOGNISED
    """Which public student it is and what it was trained with (:func:`.models.family.recognise`)."""

    @property
    def latent_frames_per_second(self) -> int:
        """Latent frames per second of output video."""
        return FRAMES_PER_SECOND if self.toy else WAN_LATENT_FRAMES_PER_SECOND

    def latent_size(self, width: int, height: int) -> tuple[int, int]:
        """Latent (H, W) for a requested pixel size; toy models have one fixed size."""
        if self.toy:
            side = ToyCodec().latent_size
            return side, side
        try:
            check_pixels(width, height)
        except ValueError as err:
            raise ValueError(f"Wan video size: {err}") from None
        return height // 8, width // 8

    def latent_frames(self, seconds: float, chunk_frames: int) -> int:
        """Latent frames for ``seconds`` of video, rounded up to whole chunks (at least one)."""
        if not math.isfinite(seconds) or seconds <= 0:
            raise ValueError(f"length must be a positive number of seconds, got {seconds}")
        SECONDS.check("seconds", seconds)
        frames = math.ceil(seconds * self.latent_frames_per_second - 1e-9)
        return max(1, math.ceil(frames / chunk_frames)) * chunk_frames

    def kv_cache_bytes(self, memory: MemoryConfig, latent_size: tuple[int, int], num_latent_frames: int) -> int:
        """Bytes of K/V the memory holds at most over a rollout (all layers), for a memory manager's budget."""
        return kv_cache_bytes(self.model.config, memory, latent_size, num_latent_frames, self.model.dtype)

    def rollout_need(self, memory: MemoryConfig, latent_size: tuple[int, int], num_latent_frames: int) -> MemoryNeed:
        """Bytes a rollout of this student needs (K/V cache, one chunk's activations, the whole video's latents)."""
        return rollout_need(self.model.config, memory, latent_size, num_latent_frames, self.model.dtype)

    def encode_prompt(self, text: str) -> Tensor:
        """(1, L, D) text states from the bundled encoder; only toy-world models bundle one."""
        if not self.toy:
            raise ValueError(f"{self.name} is a Wan model: connect a CONDITIONING from CLIP Text Encode (umT5)")
        cfg = self.model.config
        return ToyTextEncoder(width=cfg.text_dim, max_tokens=cfg.text_len).encode([text])

    def raw_latents(self, latents: Tensor) -> Tensor:
        """Normalised model-space latents -> the codec / VAE's raw latents."""
        return ToyCodec().denormalize(latents) if self.toy else wan_denormalize(latents)


def is_toy_config(model: WanModel) -> bool:
    """Whether a model works on toy-codec latents (48 channels in and out) rather than Wan VAE latents (16)."""
    cfg = model.config
    return cfg.in_channels == cfg.out_channels == ToyCodec.latent_channels


def load_student(source: Source | os.PathLike[str], *, dtype: torch.dtype | None = None,
                 device: str | torch.device | None = None, share: bool = False, config: WanConfig | None = None,
                 lora: Sequence[tuple[LoraSource, float]] = ()) -> Student:
    """Load a student checkpoint (any format :func:`load_model` accepts, LoRAs merged) and tell toy from Wan models."""
    model, family = load_recognised(source, dtype=dtype, device=device, share=share, config=config, lora=lora)
    name = Path(source).name if isinstance(source, (str, os.PathLike)) else "state dict"
    return Student(model=model, name=name, toy=is_toy_config(model), family=family)


def memory_for(student: Student, memory: MemoryConfig | None) -> MemoryConfig:
    """The memory to sample ``student`` with: ``memory``, or its family's preset when None; at the chunk size its
    family was trained with when the family is known (frame-wise students run one latent frame per chunk).
    """
    recognised = student.family
    memory = memory if memory is not None else memory_preset(recognised.family.memory)
    if recognised.known and memory.chunk_frames != recognised.family.chunk_frames:
        memory = dataclasses.replace(memory, chunk_frames=recognised.family.chunk_frames)
    return memory
