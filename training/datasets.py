"""What a training run reads: the toy world (``data`` empty) or a folder written by ``prepare-data``.

Clip stages (teacher, context teacher) read video clips: toy scene clips made on the fly, or a latent cache; a
context-teacher clip ends in its target. The data-free stages (ODE init, Stage 1, Stage 2) read prompts: scene
prompts, or a prompt cache. Both give the unconditional text states of guidance: the toy encoder's empty prompt, or
the cache's ``negative.safetensors``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import Tensor
from torch.utils.data import Dataset

from context_forcing_core.models.config import WanConfig
from context_forcing_core.toyworld.codec import ToyCodec
from context_forcing_core.toyworld.dataset import SceneClipDataset, SceneContextClipDataset, ScenePromptDataset
from context_forcing_core.toyworld.text import ToyTextEncoder

from .config import TrainConfig
from .data.cache import MANIFEST, LatentClipDataset
from .data.negative import read_negative
from .data.prompt_cache import PROMPT_MANIFEST, EncodedPromptDataset

CLIP_STAGES = ("teacher", "context-teacher")
"""Stages that train on video clips; the others are data-free (prompts only)."""


@dataclass(kw_only=True, slots=True)
class TrainingData:
    """The datasets of one run."""

    prompts: Dataset | None
    """Items ``(prompt, (text_len, D) states)``; None in the clip stages of prepared data."""
    clips: Dataset | None
    """Items with ``latents`` (C, F, h, w) and ``text`` and a ``collate``; None in the data-free stages."""
    uncond: Tensor
    """(1, text_len, D) states of the negative (toy: empty) prompt."""


def clip_frames(cfg: TrainConfig) -> int:
    """Latent frames a clip stage trains on: the teacher's clip, or the longest context plus the target."""
    return cfg.rollout.frames if cfg.stage == "teacher" else cfg.teacher_stage.context_max + cfg.rollout.target_frames


def load_training_data(cfg: TrainConfig, model: WanConfig) -> TrainingData:
    """The run's data, checked against the model it feeds.

    Raises:
        ValueError: A non-toy model without ``data``, the wrong kind of cache for the stage, or a cache whose
            shapes do not fit the model or the configuration (the message names the folder and what differs).
        FileNotFoundError: ``data`` is not a prepared folder.

    """
    need = clip_frames(cfg) if cfg.stage in CLIP_STAGES else 0
    if not cfg.data:
        if model.in_channels != ToyCodec.latent_channels or tuple(cfg.rollout.latent_size) != (8, 8):
            raise ValueError(f"model {cfg.model!r} does not run on the toy world (48-channel 8 x 8 latents); give "
                             "--data, a folder written by `python -m training.run prepare-data`")
        encoder = ToyTextEncoder(width=model.text_dim, max_tokens=model.text_len)
        if cfg.stage == "context-teacher":
            clips = SceneContextClipDataset(1_000_000, context_frames=cfg.teacher_stage.context_max,
                                            target_frames=cfg.rollout.target_frames, seed=cfg.seed, encoder=encoder)
        else:
            clips = SceneClipDataset(1_000_000, num_latent_frames=need, seed=cfg.seed, encoder=encoder) if need else None
        return TrainingData(prompts=ScenePromptDataset(1024, seed=cfg.seed, encoder=encoder), clips=clips,
                            uncond=encoder.encode([""]))
    folder = Path(cfg.data)
    if need:
        if not (folder / MANIFEST).is_file():
            raise ValueError(f"{cfg.stage} trains on video clips: {folder} is not a latent cache (no {MANIFEST}); "
                             "prepare it with prepare-data --videos --captions")
        clips = LatentClipDataset(folder)
        c, f, h, w = clips.spec.latent_shape
        if c != model.in_channels or (h, w) != tuple(cfg.rollout.latent_size) or f < need:
            raise ValueError(f"{folder}: clips hold latents (C, F, h, w) = {(c, f, h, w)}; {cfg.stage} needs "
                             f"C = {model.in_channels}, (h, w) = {tuple(cfg.rollout.latent_size)} and F >= {need}")
        text_len, text_dim, prompts = clips.spec.text_len, clips.spec.text_dim, None
    else:
        if not (folder / PROMPT_MANIFEST).is_file():
            raise ValueError(f"{cfg.stage} is data-free and reads prompts: {folder} is not a prompt cache (no "
                             f"{PROMPT_MANIFEST}); prepare it with prepare-data --prompts")
        prompts, clips = EncodedPromptDataset(folder), None
        text_len, text_dim = prompts.spec.text_len, prompts.spec.text_dim
    if text_dim != model.text_dim or text_len > model.text_len:
        raise ValueError(f"{folder}: text states of width {text_dim} and {text_len} rows; model {cfg.model!r} takes "
                         f"width {model.text_dim} and at most {model.text_len} rows")
    if (len(clips) if clips is not None else len(prompts)) == 0:
        raise ValueError(f"{folder} holds no items")
    uncond = read_negative(folder, text_len=text_len, text_dim=text_dim)
    return TrainingData(prompts=prompts, clips=clips, uncond=uncond)
