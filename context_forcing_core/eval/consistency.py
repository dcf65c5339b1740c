"""Consistency metrics on per-frame features: first-frame curves (DINOv2, CLIP-F), text alignment (CLIP-T), VBench.

Every function is pure and takes features already extracted, one row per frame: ``(T, D)`` numpy arrays or torch
tensors (converted to float64 numpy on the CPU). Rows are L2-normalised here, so callers may pass raw embeddings.
Time is in seconds, frame ``i`` sits at ``i / fps``. Scores are cosines in [-1, 1] (VBench scores in [0, 1]), never
multiplied by 100.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

EPS = 1e-12
"""Floor of a feature's norm in :func:`normalize` (an all-zero feature stays zero instead of becoming NaN)."""


def as_features(features: Any, name: str = "features") -> np.ndarray:
    """Features as float64 numpy ``(T, D)``; torch tensors are detached and copied to the CPU.

    Raises:
        ValueError: not 2-D, no frame or no dimension, or non-finite values.

    """
    if hasattr(features, "detach"):
        features = features.detach().cpu().double().numpy()
    arr = np.asarray(features, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"{name} must have shape (T, D) with T, D >= 1, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return arr


def _numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().double().numpy() if hasattr(x, "detach") else np.asarray(x, dtype=np.float64)


def normalize(features: Any) -> np.ndarray:
    """(T, D) -> (T, D) rows divided by their L2 norm (floored at :data:`EPS`)."""
    arr = as_features(features)
    return arr / np.maximum(np.linalg.norm(arr, axis=1, keepdims=True), EPS)


def window_indices(num_frames: int, fps: float, t_s: float, half_width_s: float = 0.5) -> np.ndarray:
    """Frames whose time ``i / fps`` lies in the closed window ``[t_s - half_width_s, t_s + half_width_s]``.

    Clip rule: the window is intersected with the video, ``0 <= i <= num_frames - 1``; a window partly outside keeps
    the frames inside (fewer than usual), a window wholly outside gives an empty array (the curves raise on it, and
    :func:`~context_forcing_core.eval.evaluate.usable_timestamps` drops such timestamps). Bounds are compared with a
    1e-9-frame tolerance so that 9.5 s x 16 fps counts as frame 152 exactly. At 16 fps and t = 10 s: frames 152..168
    (17 frames); at t = 0 the window is frames 0..8 and includes frame 0 itself.

    Args:
        num_frames: frames in the video (>= 0).
        fps: frames per second (> 0).
        t_s: window centre in seconds.
        half_width_s: half the window length in seconds (>= 0; the paper: 0.5).

    Returns:
        (K,) int64 frame indices in increasing order, K >= 0.

    """
    if num_frames < 0 or not fps > 0 or not half_width_s >= 0 or not math.isfinite(t_s):
        raise ValueError(f"need num_frames >= 0, fps > 0, half_width_s >= 0 and a finite t_s, got {num_frames}, "
                         f"{fps}, {half_width_s}, {t_s}")
    first = max(0, math.ceil((t_s - half_width_s) * fps - 1e-9))
    last = min(num_frames - 1, math.floor((t_s + half_width_s) * fps + 1e-9))
    return np.arange(first, last + 1, dtype=np.int64) if last >= first else np.zeros(0, dtype=np.int64)


def _windowed_mean(per_frame: np.ndarray, fps: float, timestamps_s: Sequence[float], half_width_s: float) -> np.ndarray:
    """(T,) per-frame values -> (K,) mean over each timestamp's window."""
    out = np.empty(len(timestamps_s), dtype=np.float64)
    for k, t in enumerate(timestamps_s):
        idx = window_indices(len(per_frame), fps, t, half_width_s)
        if len(idx) == 0:
            duration = (len(per_frame) - 1) / fps
            raise ValueError(f"the window around t = {t:g} s holds no frame of a {duration:g}-s video "
                             f"({len(per_frame)} frames at {fps:g} fps)")
        out[k] = per_frame[idx].mean()
    return out


def first_frame_similarity(features: Any) -> np.ndarray:
    """(T, D) -> (T,) cos(f_0, f_i) for every frame i (1 for frame 0)."""
    f = normalize(features)
    return f @ f[0]


def first_frame_curve(features: Any, fps: float, timestamps_s: Sequence[float], half_width_s: float = 0.5) -> np.ndarray:
    """Context Forcing's DINOv2 / CLIP-F curve: at each t, mean over the window of cos(f_0, f_i).

    ``curve[k] = mean_{i in W(t_k)} cos(f_0, f_i)`` with ``W`` from :func:`window_indices`.

    Args:
        features: (T, D) image features of every frame.
        fps: frames per second.
        timestamps_s: (K,) window centres in seconds.
        half_width_s: half window length in seconds.

    Returns:
        (K,) mean cosines in [-1, 1].

    Raises:
        ValueError: a window holds no frame.

    """
    return _windowed_mean(first_frame_similarity(features), fps, timestamps_s, half_width_s)


def text_similarity(image_features: Any, text_feature: Any) -> np.ndarray:
    """(T, D) image features and a (D,) or (1, D) text feature -> (T,) cos(image_i, text)."""
    img = normalize(image_features)
    txt = normalize(_numpy(text_feature).reshape(1, -1))
    if txt.shape[1] != img.shape[1]:
        raise ValueError(f"text feature has {txt.shape[1]} dimensions, image features {img.shape[1]}")
    return img @ txt[0]


def text_alignment_curve(image_features: Any, text_feature: Any, fps: float, timestamps_s: Sequence[float],
                         half_width_s: float = 0.5) -> np.ndarray:
    """CLIP-T curve: at each t, mean over the window of cos(CLIP image feature of frame i, CLIP text feature).

    Returns:
        (K,) mean cosines in [-1, 1].

    """
    return _windowed_mean(text_similarity(image_features, text_feature), fps, timestamps_s, half_width_s)


def vbench_frame_scores(features: Any) -> np.ndarray:
    """VBench subject / background consistency per frame, for frames 1..T-1.

    ``s_i = 0.5 [max(0, cos(f_{i-1}, f_i)) + max(0, cos(f_0, f_i))]`` (vbench/subject_consistency.py).

    Returns:
        (T - 1,) scores in [0, 1]; empty for a single frame.

    """
    f = normalize(features)
    prev = np.maximum(0.0, (f[:-1] * f[1:]).sum(axis=1))  # (T - 1,) cos(f_{i-1}, f_i)
    first = np.maximum(0.0, f[1:] @ f[0])  # (T - 1,) cos(f_0, f_i)
    return 0.5 * (prev + first)


def vbench_consistency(features: Any) -> float:
    """VBench subject / background consistency of one video: the mean of :func:`vbench_frame_scores` (N - 1 frames).

    Raises:
        ValueError: fewer than two frames.

    """
    scores = vbench_frame_scores(features)
    if len(scores) == 0:
        raise ValueError("VBench consistency needs at least two frames")
    return float(scores.mean())


def clip_starts(num_frames: int, clip_frames: int) -> list[int]:
    """First frame of each VBench-Long style fixed-length clip.

    Clips start at 0, L, 2L, ...; a tail shorter than L is replaced by the last L frames (it borrows preceding
    frames, so every clip has L frames); a video shorter than L is one clip of all its frames.
    """
    if clip_frames < 2 or num_frames < 1:
        raise ValueError(f"need clip_frames >= 2 and num_frames >= 1, got {clip_frames}, {num_frames}")
    if num_frames <= clip_frames:
        return [0]
    starts = list(range(0, num_frames - clip_frames + 1, clip_frames))
    if starts[-1] + clip_frames < num_frames:
        starts.append(num_frames - clip_frames)
    return starts


def clip_averaged(features: Any, fps: float, clip_s: float = 2.0,
                  score: Callable[[np.ndarray], float] = vbench_consistency) -> float:
    """VBench-Long style score: ``score`` on each clip of ``round(clip_s * fps)`` frames, then the mean over clips.

    Clips follow :func:`clip_starts` (VBench-Long uses 2-s clips for subject / background consistency; its scene
    splitting is not done here: a generated long take is one scene).
    """
    f = as_features(features)
    length = max(2, round(clip_s * fps))
    return float(np.mean([score(f[s : s + length]) for s in clip_starts(len(f), length)]))


def start_end_delta(per_frame: Any, fraction: float = 0.15) -> float:
    """Drift of a per-frame score: mean over the last ``fraction`` of frames minus mean over the first ``fraction``.

    Each part has ``max(1, round(fraction * T))`` frames (FramePack-style start-end contrast, signed: negative = the
    score falls over the video).
    """
    values = _numpy(per_frame).reshape(-1)
    if len(values) == 0 or not 0 < fraction <= 0.5:
        raise ValueError(f"need at least one value and 0 < fraction <= 0.5, got {len(values)} values, {fraction}")
    k = max(1, round(fraction * len(values)))
    return float(values[-k:].mean() - values[:k].mean())


@dataclass(kw_only=True, slots=True, frozen=True)
class Summary:
    """Mean and spread of one metric over videos."""

    mean: float
    """Mean over videos of the per-video value (NaN when no video has one)."""
    std: float
    """Population standard deviation over videos (ddof = 0; 0 for one video, NaN for none)."""
    num_videos: int
    """Videos that have the value."""


def summarize_videos(per_video: Sequence[float]) -> Summary:
    """Video-weighted aggregation: each video's score (already a mean over its own frames) counts once.

    This is VBench's multi-GPU convention (mean of per-video means), not its single-process frame-weighted one: a long
    video does not outweigh a short one. NaN values (a metric a video lacks) are skipped.
    """
    values = np.asarray([v for v in per_video if not math.isnan(v)], dtype=np.float64)
    if len(values) == 0:
        return Summary(mean=float("nan"), std=float("nan"), num_videos=0)
    return Summary(mean=float(values.mean()), std=float(values.std()), num_videos=len(values))
