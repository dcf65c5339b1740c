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

from .constants import FRAMES_PER_SECOND, PALETTES


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


def halfway_threshold(reference: RevisitCurve, baseline: RevisitCurve) -> float:
    """Threshold halfway between a ground-truth curve and a forgetting baseline's curve.

    ``threshold = (max_b reference.error[b] + max_b baseline.error[b]) / 2`` over the bins populated in both curves, in
    mean abs RGB difference (0..1). For a ground-truth reference (error 0) this is half the error of forgotten content.
    """
    if not np.array_equal(reference.bin_edges_s, baseline.bin_edges_s):
        raise ValueError("curves must share their bin edges")
    both = reference.populated & baseline.populated
    if not both.any():
        raise ValueError("the curves have no populated gap bin in common")
    return float((reference.error[both].max() + baseline.error[both].max()) / 2)


# --- The retired panning world (a camera panning over a panorama): kept only while training/samples.py scores
# --- its sample videos with estimate_shifts, revisit_curve and drift; nothing in the core uses them.

PAN_BIN_EDGES_S = (0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 40.0, 80.0)
"""Revisit-gap bin edges of :func:`revisit_curve` in toy seconds."""


def estimate_shifts(frames: Any, max_shift: int = 8) -> np.ndarray:
    """Horizontal camera motion between consecutive frames by a 1-D shift search.

    For every pair (t, t + 1) and every candidate ``d`` in ``[-max_shift, max_shift]`` the cost is
    ``mean |frame[t+1][:, :, j] - frame[t][:, :, j + d]|`` over the overlapping columns j; the shift is the ``d`` with the
    lowest cost (ties go to the smaller ``|d|``, then to the negative one). The convention is that of the camera:
    ``shift[t] = offsets[t + 1] - offsets[t]`` for a ground-truth video (positive = the view moves right).

    Args:
        frames: (T, 3, H, W) RGB.
        max_shift: largest |shift| searched, in pixels per frame; must be in [0, W - 1].

    Returns:
        (T - 1,) int64 shifts in pixels per frame.

    """
    candidates, costs = _shift_costs(as_frames(frames), max_shift)
    return candidates[np.argmin(costs, axis=1)]


def _shift_costs(arr: np.ndarray, max_shift: int) -> tuple[np.ndarray, np.ndarray]:
    """Candidate shifts (K,) int64, ordered by (|d|, d), and the cost of each for every frame pair, (T - 1, K)."""
    width = arr.shape[-1]
    if not 0 <= max_shift < width:
        raise ValueError(f"max_shift must be in [0, {width - 1}], got {max_shift}")
    candidates = np.asarray(sorted(range(-max_shift, max_shift + 1), key=lambda d: (abs(d), d)), dtype=np.int64)
    prev, nxt = arr[:-1], arr[1:]
    costs = np.empty((max(len(arr) - 1, 0), len(candidates)), dtype=np.float64)
    for k, d in enumerate(candidates):
        if d >= 0:
            diff = nxt[..., : width - d] - prev[..., d:]
        else:
            diff = nxt[..., -d:] - prev[..., : width + d]
        costs[:, k] = np.abs(diff).mean(axis=(1, 2, 3))
    return candidates, costs


def canvas_positions(shifts: np.ndarray, width: int, period: int | None = None) -> tuple[np.ndarray, int]:
    """Canvas column of every frame's left edge from the cumulative shifts, and the canvas width.

    Without ``period`` the canvas is just wide enough for the whole path (the leftmost view starts at column 0). With
    ``period`` (for ``loop`` motion over a panorama of that width) canvas columns are taken modulo ``period``.

    Returns:
        ((T,) int64 left-edge positions, canvas width in pixels).

    """
    pos = np.concatenate([[0], np.cumsum(np.asarray(shifts, dtype=np.int64))])
    if period is None:
        pos = pos - pos.min()
        return pos, int(pos.max()) + width
    if period < width:
        raise ValueError(f"period must be at least the frame width {width}, got {period}")
    return pos % period, int(period)


def revisit_curve(
    frames: Any,
    *,
    shifts: np.ndarray | None = None,
    period: int | None = None,
    bin_edges_s: tuple[float, ...] = PAN_BIN_EDGES_S,
    fps: float = FRAMES_PER_SECOND,
    from_frame: int = 0,
) -> RevisitCurve:
    """Revisit consistency vs gap: how much a video disagrees with itself when the camera comes back.

    The frames are placed on a canvas with the cumulative ``shifts`` (estimated with :func:`estimate_shifts` when not
    given; canvas columns wrap modulo ``period`` when given). Frame t shows canvas columns ``c = pos[t] + j``. For a
    column last in view at frame ``s < t - 1`` (it left the view and came back):

    ``error = mean over (channel, row) of |frame[t][:, :, j] - content(c, s)|`` (mean abs RGB difference, 0..1), where
    ``content(c, s)`` is the column as the same video showed it at frame s, and ``gap = (t - s) / fps`` seconds.

    Errors are averaged per gap bin (each revisit counts once). Columns also in view at t - 1 go to the continuous-view
    error instead. Ground-truth videos score exactly 0 everywhere.

    Args:
        frames: (T, 3, H, W) RGB in [0, 1].
        shifts: (T - 1,) camera shifts in pixels per frame (``offsets[t+1] - offsets[t]``).
        period: canvas period in pixels (the panorama width, for motion that wraps around), at least W.
        bin_edges_s: increasing gap bin edges in toy seconds.
        fps: frames per toy second.
        from_frame: count only revisits (and continuous columns) at frames t >= from_frame; earlier frames are still
            what later ones are compared with (e.g. a continuation scored against the context it was given).

    Returns:
        The :class:`RevisitCurve`.

    """
    arr = as_frames(frames)
    num, _, height, width = arr.shape
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if not 0 <= from_frame < num:
        raise ValueError(f"from_frame must be in [0, {num - 1}], got {from_frame}")
    shifts = estimate_shifts(arr) if shifts is None else np.asarray(shifts, dtype=np.int64)
    if shifts.shape != (num - 1,):
        raise ValueError(f"shifts must have shape ({num - 1},), got {shifts.shape}")
    pos, canvas_width = canvas_positions(shifts, width, period)

    last_t = np.full(canvas_width, -1, dtype=np.int64)
    content = np.zeros((canvas_width, 3 * height), dtype=np.float32)
    cols_of_frame = np.moveaxis(arr, 3, 1).reshape(num, width, 3 * height)  # (T, W, 3H): one row per column
    j = np.arange(width)
    gaps, errors, cont_sum, cont_n = [], [], 0.0, 0
    for t in range(num):
        cols = (pos[t] + j) % canvas_width
        seen_at = last_t[cols]
        cur = cols_of_frame[t]
        err = np.abs(cur - content[cols]).mean(axis=1)
        scored = t >= from_frame
        continuous = (seen_at == t - 1) & scored
        revisit = (seen_at >= 0) & (seen_at != t - 1) & scored
        cont_sum += float(err[continuous & (t > 0)].sum())
        cont_n += int((continuous & (t > 0)).sum())
        gaps.append((t - seen_at[revisit]) / fps)
        errors.append(err[revisit])
        last_t[cols] = t
        content[cols] = cur
    gaps_s = np.concatenate(gaps) if gaps else np.zeros(0)
    errs = np.concatenate(errors).astype(np.float64) if errors else np.zeros(0)
    return bin_by_gap(bin_edges_s, gaps_s, errs, continuous_sum=cont_sum, continuous_count=cont_n)


@dataclass(kw_only=True, slots=True, frozen=True)
class Drift:
    """Per-frame validity over time; early = first 15 % of frames, late = last 15 % (at least one frame each)."""

    palette_distance: np.ndarray
    """(T,) mean over pixels of the Euclidean RGB distance to the nearest palette colour (0..sqrt(3))."""
    sharpness: np.ndarray
    """(T,) mean |horizontal difference| + mean |vertical difference| of neighbouring pixels (intensity / px)."""
    early_palette_distance: float
    """Mean palette distance over the early frames."""
    late_palette_distance: float
    """Mean palette distance over the late frames."""
    palette_distance_change: float
    """late - early palette distance (positive = colours drift away from the palette)."""
    early_sharpness: float
    """Mean sharpness over the early frames."""
    late_sharpness: float
    """Mean sharpness over the late frames."""
    sharpness_change: float
    """late - early sharpness (negative = the video blurs over time)."""


def drift(frames: Any, palette: str | Any) -> Drift:
    """Quality drift over time: distance to the prompt's palette and sharpness, early vs late.

    ``palette_distance[t] = mean over pixels p of min_k ||rgb(p) - palette_k||_2`` with colours in [0, 1] (0..sqrt(3));
    ``sharpness[t] = mean |I[y, x+1] - I[y, x]| + mean |I[y+1, x] - I[y, x]|`` over channels and pixels.

    Args:
        frames: (T, 3, H, W) RGB in [0, 1].
        palette: a key of :data:`~context_forcing_core.toyworld.constants.PALETTES`, or (K, 3) RGB colours in 0..255.

    """
    arr = as_frames(frames)
    if isinstance(palette, str):
        if palette not in PALETTES:
            raise ValueError(f"unknown palette {palette!r}; allowed: {', '.join(PALETTES)}")
        palette = PALETTES[palette]
    colours = np.asarray(palette, dtype=np.float32) / 255.0
    if colours.ndim != 2 or colours.shape[1] != 3 or len(colours) == 0:
        raise ValueError(f"palette must be (K, 3) RGB colours, got shape {colours.shape}")
    pixels = np.moveaxis(arr, 1, -1)  # (T, H, W, 3)
    dist = np.sqrt(((pixels[..., None, :] - colours) ** 2).sum(-1)).min(-1)  # (T, H, W)
    pal = dist.mean(axis=(1, 2)).astype(np.float64)
    sharp = (np.abs(np.diff(arr, axis=3)).mean(axis=(1, 2, 3)) + np.abs(np.diff(arr, axis=2)).mean(axis=(1, 2, 3)))
    sharp = sharp.astype(np.float64)
    k = max(1, round(0.15 * len(arr)))
    early_p, late_p = float(pal[:k].mean()), float(pal[-k:].mean())
    early_s, late_s = float(sharp[:k].mean()), float(sharp[-k:].mean())
    return Drift(
        palette_distance=pal,
        sharpness=sharp,
        early_palette_distance=early_p,
        late_palette_distance=late_p,
        palette_distance_change=late_p - early_p,
        early_sharpness=early_s,
        late_sharpness=late_s,
        sharpness_change=late_s - early_s,
    )
