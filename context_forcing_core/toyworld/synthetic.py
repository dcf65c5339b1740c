"""Reference videos for tests and baselines: a video that forgets what it has not seen for a while, and a frozen one."""

from __future__ import annotations

import numpy as np

from .camera import render_video
from .world import FRAME_SIZE, FRAMES_PER_SECOND


def _check(panorama: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pano = np.asarray(panorama, dtype=np.float32)
    offs = np.asarray(offsets, dtype=np.int64)
    if pano.ndim != 3 or pano.shape[0] != 3 or pano.shape[2] < FRAME_SIZE:
        raise ValueError(f"panorama must have shape (3, H, W >= {FRAME_SIZE}), got {pano.shape}")
    if offs.ndim != 1 or len(offs) == 0:
        raise ValueError(f"offsets must be a non-empty 1-D array, got shape {offs.shape}")
    return pano, offs


def forgetting_video(
    panorama: np.ndarray, offsets: np.ndarray, forget_after_s: float, seed: int = 0, *, fps: float = FRAMES_PER_SECOND
) -> np.ndarray:
    """Like :func:`~context_forcing_core.toyworld.camera.render_video`, but with a memory of ``forget_after_s`` seconds.

    The video keeps its own copy of the panorama. Whenever a panorama column re-enters the view after being out of view
    for more than ``forget_after_s`` toy seconds (``(t - last_in_view) / fps > forget_after_s``), its content is
    replaced by fresh random but plausible content: the column of the original panorama a random 32..W-32 columns away
    (one random displacement per frame, so columns re-entering together stay coherent). The new content then stays
    until it is forgotten again. Columns seen for the first time show the panorama.

    Args:
        panorama: (3, H, W) float32 RGB.
        offsets: (T,) integer left edges of the view (any integers; taken modulo W).
        forget_after_s: memory span N in toy seconds (>= 0).
        seed: seed of the fresh content.
        fps: frames per toy second.

    Returns:
        (T, 3, H, 32) float32.

    """
    pano, offs = _check(panorama, offsets)
    if forget_after_s < 0:
        raise ValueError(f"forget_after_s must be >= 0, got {forget_after_s}")
    width = pano.shape[-1]
    rng = np.random.default_rng(seed)
    world = pano.copy()
    last_t = np.full(width, -1, dtype=np.int64)
    out = np.empty((len(offs), 3, pano.shape[1], FRAME_SIZE), dtype=np.float32)
    j = np.arange(FRAME_SIZE)
    for t, o in enumerate(offs):
        cols = (o + j) % width
        seen_at = last_t[cols]
        forgotten = cols[(seen_at >= 0) & ((t - seen_at) / fps > forget_after_s)]
        if len(forgotten):
            shift = int(rng.integers(FRAME_SIZE, width - FRAME_SIZE + 1)) if width >= 2 * FRAME_SIZE else width // 2
            world[:, :, forgotten] = pano[:, :, (forgotten + shift) % width]
        out[t] = world[:, :, cols]
        last_t[cols] = t
    return out


def frozen_video(panorama: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The first ground-truth frame repeated for every offset: perfectly self-consistent, but the camera never moves.

    Returns:
        (T, 3, H, 32) float32.

    """
    pano, offs = _check(panorama, offsets)
    first = render_video(pano, offs[:1])
    return np.repeat(first, len(offs), axis=0)
