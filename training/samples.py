"""Periodic sample videos of the toy student during training, with the scene oracle's recall for the log.

Every ``sample_every`` steps the EMA student films a fixed set of visit schedules (drawn from the run's seed on a
stream of their own, so the same schedules every time and none shared with training's draws) through its memory
exactly as at inference (:func:`~context_forcing_core.toyworld.scene_rollout.video_of`). The schedules share their
cut frames (one generation batch): the first is :func:`~context_forcing_core.toyworld.scenes.random_schedule`'s, the
others relabel it with other scenes and pictures. Each video is written as a GIF plus a PNG strip of frames; the
metrics are :func:`~context_forcing_core.toyworld.visit_metrics.scene_report`'s, averaged over the videos.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import Tensor

from context_forcing_core.atomic import write_atomic
from context_forcing_core.memory.config import MemoryConfig, memory_preset
from context_forcing_core.models.wan import WanModel
from context_forcing_core.toyworld.codec import ToyCodec
from context_forcing_core.toyworld.constants import FRAMES_PER_SECOND
from context_forcing_core.toyworld.scene_rollout import video_of
from context_forcing_core.toyworld.scenes import VISIT_UNIT, SceneSchedule, random_schedule, relabel_schedule
from context_forcing_core.toyworld.viewer import save_video, strip_image
from context_forcing_core.toyworld.visit_metrics import scene_report

SAMPLE_STREAM = 7_919
"""Second entry of the schedules' seed sequence ``[seed, SAMPLE_STREAM]`` (keeps them apart from training's draws)."""
SAMPLE_SCENES = 4
"""Distinct scenes per sample schedule."""
MAX_STRIP_FRAMES = 16
"""At most this many frames in a strip image."""


@dataclass(kw_only=True, slots=True)
class ToySamples:
    """Sample videos written for one training step."""

    paths: list[Path]
    """Files written: per video a GIF and a strip PNG, then ``samples.json``."""
    frames: Tensor
    """(B, T, 3, 32, 32) float32 RGB in [0, 1], one video per schedule (for TensorBoard)."""
    metrics: dict[str, float]
    """Oracle metrics averaged over the videos (NaN where no video has a value); see :func:`video_metrics`."""


def sample_frames(seconds: float) -> int:
    """Latent frames of a ``seconds``-long sample video, rounded up to whole visit units."""
    if not seconds > 0:
        raise ValueError(f"seconds must be positive, got {seconds}")
    return math.ceil(seconds * FRAMES_PER_SECOND / VISIT_UNIT) * VISIT_UNIT


def sample_schedules(count: int, seconds: float, seed: int) -> list[SceneSchedule]:
    """The ``count`` schedules the samples film: one seeded draw of :data:`SAMPLE_SCENES` scenes, relabelled."""
    if count < 1:
        raise ValueError(f"count must be positive, got {count}")
    rng = np.random.default_rng([seed, SAMPLE_STREAM])
    base = random_schedule(rng, num_frames=sample_frames(seconds), num_scenes=SAMPLE_SCENES)
    return [base] + [relabel_schedule(base, rng) for _ in range(count - 1)]


def video_metrics(frames: Tensor | np.ndarray, schedule: SceneSchedule) -> dict[str, float]:
    """Oracle metrics of one video of ``schedule``.

    Returns:
        ``recall``: share of returns (the first scene's, held by the attention sink, left out) that show the picture
        the scene's previous visit showed (chance 1 / K; NaN without returns); ``revisit_error``: their mean
        relative revisit error (0 ground truth, ~1 a wrong picture); ``library_distance``: mean distance of each
        frame to the nearest library picture of its prompt (0: a library picture).

    """
    report = scene_report(frames, schedule)
    returns = [r for r in report.returns if not r.sink]
    return {
        "recall": float(np.mean([r.recalled for r in returns])) if returns else float("nan"),
        "revisit_error": float(np.mean([r.relative for r in returns])) if returns else float("nan"),
        "library_distance": report.library_distance,
    }


def toy_samples(model: WanModel, *, videos: int, seconds: float, memory: str | MemoryConfig, seed: int,
                out_dir: str | Path, step: int) -> ToySamples:
    """Generate, decode and write one video per sample schedule; returns the files, the frames and their metrics.

    Args:
        model: a toy student (48 latent channels, toy text encoder width); its train/eval mode is restored after.
        videos: how many videos (schedules, generated as one batch).
        seconds: toy seconds per video (4 frames each), rounded up to whole visit units.
        memory: memory preset name or configuration, as at inference.
        seed: seed of the schedules and the noise (the same seed gives the same videos for the same weights).
        out_dir: folder receiving ``step_<step>/``.
        step: training step, used in the folder name and ``samples.json``.

    """
    cfg = model.config
    if cfg.in_channels != ToyCodec.latent_channels or cfg.out_channels != ToyCodec.latent_channels:
        raise ValueError(f"toy samples need a toy-codec model ({ToyCodec.latent_channels} latent channels), "
                         f"got in/out channels {cfg.in_channels}/{cfg.out_channels}")
    schedules = sample_schedules(videos, seconds, seed)
    mem = memory_preset(memory) if isinstance(memory, str) else memory
    was_training = model.training
    model.eval()
    try:
        frames, _ = video_of(model, schedules, memory=mem, seed=seed)  # (B, T, 3, 32, 32)
    finally:
        model.train(was_training)
    folder = Path(out_dir) / f"step_{step:07d}"
    paths, per_video = [], []
    num_frames = schedules[0].num_frames
    for i, (schedule, video) in enumerate(zip(schedules, frames, strict=True)):
        paths.append(save_video(video, folder / f"sample_{i}.gif", fps=FRAMES_PER_SECOND))
        strip = folder / f"sample_{i}_strip.png"
        strip_image(video, every=math.ceil(num_frames / MAX_STRIP_FRAMES)).save(strip)
        paths.append(strip)
        per_video.append(video_metrics(video, schedule))
    metrics = {k: _nanmean([m[k] for m in per_video]) for k in per_video[0]}
    summary = {"step": step, "seed": seed, "seconds": num_frames / FRAMES_PER_SECOND,
               "memory": dataclasses.asdict(mem),
               "schedules": [{"prompts": s.prompt_texts(), "pictures": [v.picture for v in s.visits],
                              "switch_frames": s.switch_frames} for s in schedules],
               "per_video": per_video, "mean": metrics}
    paths.append(write_atomic(folder / "samples.json", json.dumps(summary, indent=1)))
    return ToySamples(paths=paths, frames=frames, metrics=metrics)


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else float("nan")
