"""Oracle metrics of the scene world (``scenes.py``): revisits of scenes, recall, stability, cut response.

Pure functions of generated RGB frames ``(T, 3, 32, 32)`` in [0, 1] and the :class:`~.scenes.SceneSchedule` they were
generated for. Errors are mean absolute RGB differences (0..1); time is in toy seconds.

- A **return** is a visit whose prompt was shown before. Its revisit error compares the return's first chunk with
  the last chunk of the previous visit of that prompt, divided by the prompt's **wrong-pick error** (the mean
  distance between two different library pictures of the prompt): a model without memory picks another picture
  (K - 1 times in K) and scores ~1, ground truth scores 0. The gap is the time the scene was out of view.
- **Recall**: the return's first frame is nearest (of the prompt's K pictures) to the picture the previous visit's
  last frame is nearest to. Chance is 1 / K.
- Returns of the first scene (the one the attention sink holds) are kept apart (``sink``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from .constants import FRAMES_PER_SECOND, PALETTES
from .metrics import RevisitCurve, as_frames, bin_by_gap, effective_context
from .scenes import LIBRARY_SIZE, ScenePrompt, SceneSchedule, library

SCENE_BIN_EDGES_S = (1.0, 2.0, 5.0, 10.0, 20.0, 40.0, 80.0)
"""Gap bins of scene returns in toy seconds (a visit lasts at least 1.5 s, so no gap is shorter)."""
COMPARED_FRAMES = 3
"""Frames compared at a return: the return's first chunk against the previous visit's last chunk."""
RECALL_THRESHOLD = 0.5
"""Relative revisit error at which a return counts as forgotten: halfway between ground truth (0) and a model that
forgets (another of the prompt's pictures, 1 on average)."""


@cache
def wrong_pick_error(prompt: ScenePrompt) -> float:
    """Mean |RGB difference| between two different library pictures of ``prompt`` (over every ordered pair)."""
    lib = library(prompt)
    d = [np.abs(lib[i] - lib[j]).mean() for i in range(len(lib)) for j in range(len(lib)) if i != j]
    return float(np.mean(d))


def nearest_picture(frame: np.ndarray, prompt: ScenePrompt) -> int:
    """Index of the library picture of ``prompt`` nearest (mean |RGB difference|) to one (3, H, W) frame."""
    lib = library(prompt)
    return int(np.abs(lib - frame[None]).mean(axis=(1, 2, 3)).argmin())


@dataclass(kw_only=True, slots=True, frozen=True)
class Return:
    """One return of a scene."""

    prompt: ScenePrompt
    start: int
    """First frame of the return."""
    gap_s: float
    """Time the scene was out of view, toy seconds."""
    error: float
    """Mean |RGB difference| of the compared chunks."""
    relative: float
    """error / the prompt's wrong-pick error."""
    recalled: bool
    """The return shows the picture the previous visit showed (nearest library picture of both)."""
    sink: bool
    """The scene is the video's first (held by the attention sink)."""


@dataclass(kw_only=True, slots=True, frozen=True)
class SceneReport:
    """Everything the oracle measures on one video."""

    returns: tuple[Return, ...]
    curve: RevisitCurve
    """Relative revisit error per gap bin over the non-sink returns; ``continuous_error`` is the within-visit change."""
    recall_rate: np.ndarray
    """(bins,) share of non-sink returns recalled per gap bin (NaN where empty); chance 1 / K."""
    sink_relative: float
    """Mean relative revisit error of the first scene's returns (NaN if none)."""
    within_visit_change: float
    """Mean |frame t - frame t-1| inside visits (ground truth 0)."""
    cut_palette_distance: float
    """Mean palette distance (to the new prompt's palette) of the first chunk after each cut."""
    palette_distance: float
    """Mean palette distance of every frame to its visit's palette (prompt adherence)."""
    library_distance: float
    """Mean |RGB difference| of each frame to the nearest library picture of its prompt (0: a library picture)."""

    @property
    def effective_context_s(self) -> float:
        """Effective context at :data:`RECALL_THRESHOLD` (see ``metrics.effective_context``)."""
        return effective_context(self.curve, RECALL_THRESHOLD)


def _palette_distance(frames: np.ndarray, palette: str) -> float:
    colours = np.asarray(PALETTES[palette], dtype=np.float32) / 255.0  # (5, 3)
    pixels = np.moveaxis(frames, 1, -1)  # (T, H, W, 3)
    return float(np.sqrt(((pixels[..., None, :] - colours) ** 2).sum(-1)).min(-1).mean())


def scene_report(frames: Any, schedule: SceneSchedule, *, bin_edges_s: tuple[float, ...] = SCENE_BIN_EDGES_S
                 ) -> SceneReport:
    """Score one video against its schedule.

    Args:
        frames: (T, 3, H, W) RGB in [0, 1], T = ``schedule.num_frames``.
        schedule: what the video was asked to show.

    """
    arr = as_frames(frames)
    if len(arr) != schedule.num_frames:
        raise ValueError(f"{len(arr)} frames for a schedule of {schedule.num_frames}")
    n = COMPARED_FRAMES
    first = schedule.visits[0].prompt
    returns = []
    for v, prev in schedule.returns():
        m = min(n, v.stop - v.start, prev.stop - prev.start)
        now, then = arr[v.start:v.start + m], arr[prev.stop - m:prev.stop]
        err = float(np.abs(now - then).mean())
        returns.append(Return(prompt=v.prompt, start=v.start, gap_s=(v.start - prev.stop) / FRAMES_PER_SECOND,
                              error=err, relative=err / wrong_pick_error(v.prompt),
                              recalled=nearest_picture(now[0], v.prompt) == nearest_picture(then[-1], v.prompt),
                              sink=v.prompt == first))
    inside = [np.abs(arr[v.start + 1:v.stop] - arr[v.start:v.stop - 1]).mean(axis=(1, 2, 3))
              for v in schedule.visits if v.stop - v.start > 1]
    changes = np.concatenate(inside) if inside else np.zeros(0)
    keep = [r for r in returns if not r.sink]
    edges = np.asarray(bin_edges_s, dtype=np.float64)
    gaps = np.asarray([r.gap_s for r in keep], dtype=np.float64)
    curve = bin_by_gap(edges, gaps, np.asarray([r.relative for r in keep], dtype=np.float64),
                       continuous_sum=float(changes.sum()), continuous_count=len(changes))
    hits = np.asarray([float(r.recalled) for r in keep], dtype=np.float64)
    recall = bin_by_gap(edges, gaps, hits).error  # the share of hits per gap bin
    sink = [r.relative for r in returns if r.sink]
    cut = [_palette_distance(arr[v.start:v.start + n], v.prompt.palette) for v in schedule.visits[1:]]
    pal = [_palette_distance(arr[v.start:v.stop], v.prompt.palette) * (v.stop - v.start) for v in schedule.visits]
    lib = []
    for v in schedule.visits:
        pics = library(v.prompt)  # (K, 3, H, W)
        lib.append(np.abs(arr[v.start:v.stop, None] - pics[None]).mean(axis=(2, 3, 4)).min(1).sum())
    return SceneReport(returns=tuple(returns), curve=curve, recall_rate=recall,
                       sink_relative=float(np.mean(sink)) if sink else float("nan"),
                       within_visit_change=float(changes.mean()) if len(changes) else float("nan"),
                       cut_palette_distance=float(np.mean(cut)) if cut else float("nan"),
                       palette_distance=float(np.sum(pal) / len(arr)), library_distance=float(np.sum(lib) / len(arr)))


def chance_recall() -> float:
    """Recall rate of a model that picks one of the K pictures at random."""
    return 1.0 / LIBRARY_SIZE
