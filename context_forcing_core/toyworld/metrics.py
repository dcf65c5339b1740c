"""Revisit curves: errors of content shown again, binned by the time it was out of view, and the effective context.

A revisit compares what a video shows again after a gap with what it showed before: in the scene world a return of
a scene (``visit_metrics``). Errors are mean absolute RGB differences (0..1) or any error on that scale (the scene
world divides by the prompt's wrong-pick error); time is in toy seconds
(:data:`~context_forcing_core.toyworld.constants.FRAMES_PER_SECOND` frames per second). Frames are
``(T, 3, H, W)`` in [0, 1] (numpy arrays or torch tensors); every function is pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def as_frames(frames: Any) -> np.ndarray:
    """Frames as a float32 numpy array ``(T, 3, H, W)``; torch tensors are detached and copied to the CPU.

    Raises:
        ValueError: wrong shape, no frames, or non-finite values.

    """
    if hasattr(frames, "detach"):
        frames = frames.detach().cpu().float().numpy()
    arr = np.asarray(frames, dtype=np.float32)
    if arr.ndim != 4 or arr.shape[1] != 3 or arr.shape[0] < 1 or arr.shape[2] < 2 or arr.shape[3] < 2:
        raise ValueError(f"frames must have shape (T, 3, H, W) with T >= 1 and H, W >= 2, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("frames contain NaN or infinite values")
    return arr


@dataclass(kw_only=True, slots=True, frozen=True)
class RevisitCurve:
    """Revisit error by the time the revisited content was out of view (see :func:`bin_by_gap`)."""

    bin_edges_s: np.ndarray
    """(B + 1,) gap bin edges in toy seconds."""
    error: np.ndarray
    """(B,) mean error per gap bin; NaN where the bin is empty."""
    count: np.ndarray
    """(B,) number of revisits per gap bin."""
    gaps_s: np.ndarray
    """(N,) gap of every revisit in toy seconds (also those outside the bins)."""
    errors: np.ndarray
    """(N,) error of every revisit."""
    continuous_error: float
    """Mean error of content also in view just before (the scene world: change between consecutive frames of a
    visit); NaN if none."""
    continuous_count: int
    """Number of comparisons behind ``continuous_error``."""

    @property
    def populated(self) -> np.ndarray:
        """(B,) bool: bins with at least one revisit."""
        return self.count > 0


def bin_by_gap(bin_edges_s: Sequence[float] | np.ndarray, gaps_s: Any, errors: Any, *, continuous_sum: float = 0.0,
               continuous_count: int = 0) -> RevisitCurve:
    """The :class:`RevisitCurve` of revisits given as (gap, error) pairs.

    Revisit ``i`` falls in bin ``b`` when ``edges[b] <= gaps_s[i] < edges[b + 1]`` (the last bin is closed,
    ``<= edges[-1]``); gaps outside ``[edges[0], edges[-1]]`` are kept in ``gaps_s`` / ``errors`` but in no bin. Each
    bin's error is the mean of its revisits' errors, so with 0 / 1 errors (e.g. a return recalled or not) it is the
    share per bin.

    Args:
        bin_edges_s: (B + 1,) increasing gap bin edges in toy seconds.
        gaps_s: (N,) gaps in toy seconds.
        errors: (N,) errors (or any per-revisit value to average).
        continuous_sum: sum of the errors of ``continuous_count`` continuous-view comparisons (the curve's
            ``continuous_error`` is their mean).
        continuous_count: number of those comparisons.

    """
    edges = np.asarray(bin_edges_s, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 2 or not np.all(np.diff(edges) > 0):
        raise ValueError(f"bin_edges_s must be at least two increasing values, got {bin_edges_s}")
    gaps = np.asarray(gaps_s, dtype=np.float64)
    errs = np.asarray(errors, dtype=np.float64)
    if gaps.shape != errs.shape or gaps.ndim != 1:
        raise ValueError(f"gaps_s and errors must be 1-D of the same length, got {gaps.shape} and {errs.shape}")
    inside = (gaps >= edges[0]) & (gaps <= edges[-1])
    idx = np.clip(np.searchsorted(edges, gaps[inside], side="right") - 1, 0, len(edges) - 2)
    count = np.bincount(idx, minlength=len(edges) - 1)
    total = np.bincount(idx, weights=errs[inside], minlength=len(edges) - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        error = np.where(count > 0, total / np.maximum(count, 1), np.nan)
    return RevisitCurve(
        bin_edges_s=edges,
        error=error,
        count=count,
        gaps_s=gaps,
        errors=errs,
        continuous_error=continuous_sum / continuous_count if continuous_count else float("nan"),
        continuous_count=continuous_count,
    )


def pooled_curve(curves: list[RevisitCurve]) -> RevisitCurve:
    """One curve from the revisits of several videos: every revisit counts once (videos with more revisits weigh
    more), and the continuous error is the mean over all their continuous columns.
    """
    if not curves:
        raise ValueError("pooled_curve needs at least one curve")
    edges = curves[0].bin_edges_s
    if any(not np.array_equal(c.bin_edges_s, edges) for c in curves):
        raise ValueError("curves must share their bin edges")
    cont = [(c.continuous_error * c.continuous_count, c.continuous_count) for c in curves if c.continuous_count]
    return bin_by_gap(edges, np.concatenate([c.gaps_s for c in curves]), np.concatenate([c.errors for c in curves]),
                      continuous_sum=sum(s for s, _ in cont), continuous_count=sum(n for _, n in cont))


def effective_context(curve: RevisitCurve, threshold: float) -> float:
    """Effective context length in toy seconds: how far back the video stays consistent with itself.

    Rule: walk the populated gap bins from the shortest gap; the effective context is the lower edge of the first bin
    whose mean error is >= ``threshold``. If no populated bin fails it is the upper edge of the last populated bin (a
    lower bound: longer gaps were not tested). 0 if the first populated bin already fails; NaN if no bin is populated.
    The result is therefore resolved to the bin edges (one bin = the precision of the estimate).
    """
    populated = np.flatnonzero(curve.populated)
    if len(populated) == 0:
        return float("nan")
    for k in populated:
        if not curve.error[k] < threshold:
            return 0.0 if k == populated[0] else float(curve.bin_edges_s[k])
    return float(curve.bin_edges_s[populated[-1] + 1])
