"""Camera paths over a panorama and the rigid-pan renderer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .world import CELL, FRAME_SIZE, SceneSpec

MOTIONS = ("slow_pan", "fast_pan", "pan_with_pauses", "loop")
"""The camera steps one cell (8 px) at a time. slow_pan / fast_pan: ping-pong between the panorama's ends with a step
every 4th / every frame (2 / 8 px per frame); pan_with_pauses: ping-pong with a step every 1-4 frames (changing at
random) and pauses; loop: a step every 2nd frame, always the same direction, wrapping around the panorama."""
HOLD_FRAMES = {"slow_pan": 4, "fast_pan": 1, "loop": 2}
"""Frames between steps of the steady motions."""


@dataclass(kw_only=True, slots=True, frozen=True)
class CameraSpec:
    """How the camera moves."""

    motion: str = "pan_with_pauses"
    """One of :data:`MOTIONS`."""
    seed: int = 0
    """Seed of speeds, pauses and the starting point."""

    def __post_init__(self) -> None:
        if self.motion not in MOTIONS:
            raise ValueError(f"unknown motion {self.motion!r}; allowed: {', '.join(MOTIONS)}")


def camera_path(spec: CameraSpec, num_frames: int, panorama_width: int) -> np.ndarray:
    """Left edge of the view, in panorama pixels (a multiple of :data:`~.world.CELL`), for every frame.

    Ping-pong motions stay within [0, width - 32]; ``loop`` grows without bound (the renderer wraps it).

    Returns:
        (num_frames,) int64.

    """
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    SceneSpec(width=panorama_width)  # validates the width
    rng = np.random.default_rng(spec.seed)
    span = (panorama_width - FRAME_SIZE) // CELL  # last left edge, in cells
    x, direction = int(rng.integers(0, span + 1)), 1 if rng.random() < 0.5 else -1
    hold = HOLD_FRAMES.get(spec.motion, 2)
    phase = int(rng.integers(hold))
    pause, out = 0, np.empty(num_frames, dtype=np.int64)
    for t in range(num_frames):
        out[t] = x * CELL
        if spec.motion == "pan_with_pauses":
            if pause > 0:
                pause -= 1
                continue
            if rng.random() < 0.03:
                pause = int(rng.integers(2, 13))  # 0.5-3 toy seconds
            if rng.random() < 0.05:
                hold = int(rng.integers(1, 5))
        phase += 1
        if phase < hold:
            continue
        phase = 0
        if spec.motion != "loop" and not 0 <= x + direction <= span:  # bounce off the ends
            direction = -direction
        x += direction
    return out


def render_video(panorama: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Frames seen by the camera: frame t shows columns offsets[t] .. offsets[t] + 31 (mod width).

    Args:
        panorama: (3, 32, W) float32.
        offsets: (T,) integer left edges.

    Returns:
        (T, 3, 32, 32) float32.

    """
    width = panorama.shape[-1]
    cols = (np.asarray(offsets)[:, None] + np.arange(FRAME_SIZE)[None, :]) % width  # (T, 32)
    return np.ascontiguousarray(np.moveaxis(panorama[:, :, cols], 2, 0))  # (T, 3, 32, 32)
