"""The toy world, "scenes that come back": a finite library of still pictures per prompt, and visit schedules.

Every scene prompt (a palette and a style, :class:`ScenePrompt`) allows only :data:`LIBRARY_SIZE` fixed pictures,
4 x 4 mosaics of flat palette cells (one cell = one model token). A video is a schedule of **visits**
(:class:`Visit`): the view holds still for a whole visit (every frame the same picture), a visit lasts whole
even numbers of chunks and ends with a hard cut, and each scene of a video has its own prompt. When a prompt comes
back, the video must show the same one of its pictures as last time: memory is discrete recall, and without it a
return matches by chance (1 / ``LIBRARY_SIZE``).

Visits start on even chunks (multiples of ``2 * chunk_frames``) so that every cut chunk is one the Slow-Fast
Memory checks for surprisal (it checks every ``consolidate_every = 2`` chunks).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from torch import Tensor

from .codec import ToyCodec
from .constants import CELL, FRAME_SIZE, FRAMES_PER_SECOND, PALETTES, STYLE_PHRASES, STYLES, check_palette_style

LIBRARY_SIZE = 4
"""K: pictures per prompt."""
GRID = FRAME_SIZE // CELL
"""Cells per side of a picture (4)."""
VISIT_UNIT = 6
"""Visits start and end on multiples of this many latent frames (two 3-frame chunks, 1.5 toy seconds)."""


@dataclass(kw_only=True, slots=True, frozen=True, order=True)
class ScenePrompt:
    """A scene prompt: a palette and a style; its pictures are :func:`library` ``(prompt)``."""

    palette: str = "desert"
    """A key of :data:`~.constants.PALETTES`."""
    style: str = "mixed"
    """One of :data:`~.constants.STYLES`."""

    def __post_init__(self) -> None:
        check_palette_style(self.palette, self.style)

    @property
    def text(self) -> str:
        """Canonical English, e.g. ``"a desert scene, shapes over bands"``."""
        return f"a {self.palette} scene, {STYLE_PHRASES[self.style]}"


def all_scene_prompts() -> list[ScenePrompt]:
    """Every palette x style (18), in a fixed order."""
    return [ScenePrompt(palette=p, style=s) for p in PALETTES for s in STYLES]


def _picture_cells(rng: np.random.Generator, n_colours: int, style: str) -> np.ndarray:
    """(4, 4) int colour index per cell for one picture of ``style``."""
    if style == "shapes":
        cells = np.zeros((GRID, GRID), dtype=np.int64)
    else:  # vertical bands: every column one colour, neighbours differently coloured
        cols = [int(rng.integers(n_colours))]
        for _ in range(GRID - 1):
            cols.append(int(rng.choice([c for c in range(n_colours) if c != cols[-1]])))
        cells = np.tile(np.asarray(cols), (GRID, 1))
    if style != "bands":  # one or two blocks of another colour than the cell they cover
        for _ in range(int(rng.integers(1, 3))):
            y, x = int(rng.integers(GRID - 1)), int(rng.integers(GRID - 1))
            h, w = int(rng.integers(1, 3)), int(rng.integers(1, 3))
            under = int(cells[y, x])
            cells[y:y + h, x:x + w] = int(rng.choice([c for c in range(n_colours) if c != under]))
    return cells


@cache
def _library_cells(palette: str, style: str, size: int) -> tuple[bytes, ...]:
    """The ``size`` distinct cell layouts of one prompt, drawn from a seed fixed by the prompt's name."""
    rng = np.random.default_rng(zlib.crc32(f"scenes:{palette}:{style}".encode()))
    seen: list[bytes] = []
    while len(seen) < size:
        cells = _picture_cells(rng, len(PALETTES[palette]), style).tobytes()
        if cells not in seen:
            seen.append(cells)
    return tuple(seen)


def library(prompt: ScenePrompt, size: int = LIBRARY_SIZE) -> np.ndarray:
    """The prompt's pictures.

    Returns:
        (size, 3, 32, 32) float32 RGB in [0, 1] on the 1/256 grid (the toy codec's round trip is exact), flat over
        every 8 x 8-px cell, every cell one of the palette's colours; the same for every call.

    """
    colours = np.asarray(PALETTES[prompt.palette], dtype=np.float32) / 255.0  # (5, 3)
    out = []
    for raw in _library_cells(prompt.palette, prompt.style, size):
        cells = np.frombuffer(raw, dtype=np.int64).reshape(GRID, GRID)
        img = colours[cells].transpose(2, 0, 1).repeat(CELL, axis=1).repeat(CELL, axis=2)  # (3, 32, 32)
        out.append(np.round(img * 256) / np.float32(256))
    return np.stack(out).astype(np.float32)


def library_latents(prompt: ScenePrompt, size: int = LIBRARY_SIZE) -> Tensor:
    """(size, 48, 8, 8) float32 normalised latents of :func:`library` (one latent frame per picture)."""
    frames = torch.from_numpy(library(prompt, size))  # (K, 3, 32, 32)
    return ToyCodec().encode(frames)[0].permute(1, 0, 2, 3).contiguous()  # (1, 48, K, 8, 8) -> (K, 48, 8, 8)


@dataclass(kw_only=True, slots=True, frozen=True)
class Visit:
    """One picture of one prompt held for a stretch of frames."""

    prompt: ScenePrompt
    """The scene's prompt (each scene of a video has its own)."""
    picture: int
    """Index into :func:`library` ``(prompt)``."""
    start: int
    """First latent frame."""
    stop: int
    """One past the last latent frame."""


@dataclass(kw_only=True, slots=True, frozen=True)
class SceneSchedule:
    """A whole video: consecutive visits from frame 0, a hard cut between each two."""

    visits: tuple[Visit, ...]

    def __post_init__(self) -> None:
        if not self.visits or self.visits[0].start != 0:
            raise ValueError("a schedule needs at least one visit, the first starting at frame 0")
        pictures: dict[ScenePrompt, int] = {}
        for a, b in zip(self.visits, self.visits[1:]):
            if b.start != a.stop:
                raise ValueError(f"visits must follow each other without gaps: {a.stop} then {b.start}")
            if b.prompt == a.prompt:
                raise ValueError(f"two consecutive visits of {a.prompt.text!r}: a cut must change the scene")
        for v in self.visits:
            if v.stop <= v.start or not 0 <= v.picture < LIBRARY_SIZE:
                raise ValueError(f"bad visit {v}")
            if pictures.setdefault(v.prompt, v.picture) != v.picture:
                raise ValueError(f"{v.prompt.text!r} shows two different pictures in one video")

    @property
    def num_frames(self) -> int:
        """Latent frames of the video."""
        return self.visits[-1].stop

    @property
    def switch_frames(self) -> list[int]:
        """First frame of every visit after the first (what :class:`PromptSchedule` takes)."""
        return [v.start for v in self.visits[1:]]

    def prompt_texts(self) -> list[str]:
        """The prompt text of every visit, in order."""
        return [v.prompt.text for v in self.visits]

    def returns(self, *, sink: bool = True) -> list[tuple[Visit, Visit]]:
        """``(return, previous visit of its scene)`` for every visit whose prompt was shown before, in order.

        Args:
            sink: include the returns of the first scene (the one the attention sink holds); False leaves them out.

        """
        first, last, out = self.visits[0].prompt, {}, []
        for v in self.visits:
            if v.prompt in last and (sink or v.prompt != first):
                out.append((v, last[v.prompt]))
            last[v.prompt] = v
        return out


def random_schedule(rng: np.random.Generator, *, num_frames: int = 60 * FRAMES_PER_SECOND, num_scenes: int = 5,
                    visit_units: tuple[int, int] = (1, 3), prompts: list[ScenePrompt] | None = None,
                    min_return_gap: int = 0) -> SceneSchedule:
    """A seeded schedule of visits among ``num_scenes`` scenes with distinct palettes (so a scene's colours name it).

    Visits last ``visit_units`` (inclusive range) x :data:`VISIT_UNIT` frames (1.5-4.5 s by default); the next scene
    is drawn among the others with weight growing with the time since it was last shown, squared, and one scene
    (the "long-gap" scene, not the first) is kept away for 25-45 s once, so gaps spread from ~2 s to ~50 s. The
    first scene returns too (the attention sink holds it). Pictures are drawn uniformly among the K of each prompt.
    With ``min_return_gap`` > 0 a scene that left comes back no sooner than that many frames after its visit ended
    (when every other scene is that recent, the least recently shown one comes back); 0 leaves the draws unchanged.
    """
    if min_return_gap < 0:
        raise ValueError(f"min_return_gap must be >= 0 frames, got {min_return_gap}")
    if num_frames <= 0 or num_frames % VISIT_UNIT:
        raise ValueError(f"num_frames must be a positive multiple of {VISIT_UNIT}, got {num_frames}")
    pool = prompts if prompts is not None else all_scene_prompts()
    palettes = sorted({p.palette for p in pool})
    if not 2 <= num_scenes <= len(palettes):
        raise ValueError(f"num_scenes must lie in [2, {len(palettes)}] (distinct palettes), got {num_scenes}")
    chosen_palettes = rng.permutation(palettes)[:num_scenes]
    scenes = []
    for pal in chosen_palettes:
        options = [p for p in pool if p.palette == pal]
        scenes.append(options[int(rng.integers(len(options)))])
    pictures = [int(rng.integers(LIBRARY_SIZE)) for _ in scenes]
    long_gap = int(rng.integers(1, num_scenes))
    away_from, away_for = None, int(rng.integers(25, 46)) * FRAMES_PER_SECOND
    last_seen = {i: -10**6 for i in range(num_scenes)}
    visits, frame, current = [], 0, 0
    while frame < num_frames:
        length = int(rng.integers(visit_units[0], visit_units[1] + 1)) * VISIT_UNIT
        stop = min(num_frames, frame + length)
        visits.append(Visit(prompt=scenes[current], picture=pictures[current], start=frame, stop=stop))
        last_seen[current] = stop
        if current == long_gap and away_from is None:
            away_from = stop
        frame = stop
        blocked = {current}
        if away_from is not None and frame - away_from < away_for:
            blocked.add(long_gap)
        options = [i for i in range(num_scenes) if i not in blocked] or [i for i in range(num_scenes) if i != current]
        if min_return_gap:
            options = ([i for i in options if frame - last_seen[i] >= min_return_gap]
                       or [min(options, key=lambda i: last_seen[i])])
        weights = np.asarray([float(frame - last_seen[i] + VISIT_UNIT) ** 2 for i in options])
        current = options[int(rng.choice(len(options), p=weights / weights.sum()))]
    return SceneSchedule(visits=tuple(visits))


def return_schedule(rng: np.random.Generator, *, context_frames: int, target_frames: int, return_prob: float = 0.5,
                    num_scenes: int = 5, visit_units: tuple[int, int] = (1, 3)) -> SceneSchedule:
    """A context-teacher clip: :func:`random_schedule` over ``context_frames``, then one visit of ``target_frames``
    (the target) that, with probability ``return_prob``, returns to a scene of the context other than the last one
    (same prompt, same picture; gaps from one visit to the whole context), else shows a prompt whose palette the
    context never showed (a first visit: nothing to recall).
    """
    if not 0 <= return_prob <= 1 or target_frames < 1:
        raise ValueError(f"need return_prob in [0, 1] and target_frames >= 1, got {return_prob}, {target_frames}")
    base = random_schedule(rng, num_frames=context_frames, num_scenes=num_scenes, visit_units=visit_units)
    last = base.visits[-1]
    earlier = {v.prompt: v.picture for v in base.visits if v.prompt != last.prompt}
    if earlier and rng.random() < return_prob:
        prompt = list(earlier)[int(rng.integers(len(earlier)))]
        picture = earlier[prompt]
    else:
        used = {v.prompt.palette for v in base.visits}
        fresh = [p for p in all_scene_prompts() if p.palette not in used]
        if not fresh:
            raise ValueError(f"{num_scenes} scenes leave no unused palette for a first visit")
        prompt, picture = fresh[int(rng.integers(len(fresh)))], int(rng.integers(LIBRARY_SIZE))
    target = Visit(prompt=prompt, picture=picture, start=context_frames, stop=context_frames + target_frames)
    return SceneSchedule(visits=(*base.visits, target))


def schedule_latents(schedule: SceneSchedule) -> Tensor:
    """(48, T, 8, 8) float32 normalised latents of a schedule: every frame of a visit is its picture's latent."""
    return torch.cat([library_latents(v.prompt)[v.picture][:, None].expand(-1, v.stop - v.start, -1, -1)
                      for v in schedule.visits], dim=1)


def render_schedule(schedule: SceneSchedule) -> np.ndarray:
    """(T, 3, 32, 32) float32 ground-truth RGB frames: every frame of a visit is its picture."""
    out = np.empty((schedule.num_frames, 3, FRAME_SIZE, FRAME_SIZE), dtype=np.float32)
    for v in schedule.visits:
        out[v.start:v.stop] = library(v.prompt)[v.picture]
    return out


def forgetting_schedule(schedule: SceneSchedule, forget_after_s: float) -> SceneSchedule:
    """The oracle that forgets: a scene away for more than ``forget_after_s`` comes back as another of its
    prompt's pictures (the next one, cyclically) and keeps that one until forgotten again.

    The result may show two pictures of one prompt, so it bypasses the one-picture-per-prompt check.
    """
    horizon = forget_after_s * FRAMES_PER_SECOND
    shown: dict[ScenePrompt, tuple[int, int]] = {}  # prompt -> (picture shown, last frame shown)
    visits = []
    for v in schedule.visits:
        pic = v.picture
        if v.prompt in shown:
            prev_pic, prev_stop = shown[v.prompt]
            pic = (prev_pic + 1) % LIBRARY_SIZE if v.start - prev_stop > horizon else prev_pic
        shown[v.prompt] = (pic, v.stop)
        visits.append(Visit(prompt=v.prompt, picture=pic, start=v.start, stop=v.stop))
    out = object.__new__(SceneSchedule)
    object.__setattr__(out, "visits", tuple(visits))
    return out


def relabel_schedule(schedule: SceneSchedule, rng: np.random.Generator,
                     prompts: list[ScenePrompt] | None = None) -> SceneSchedule:
    """The same visit timing with every scene given a new prompt (distinct palettes again) and picture: a batch of
    schedules that switch on the same frames, as one :class:`PromptSchedule` needs.
    """
    pool = prompts if prompts is not None else all_scene_prompts()
    scenes = list(dict.fromkeys(v.prompt for v in schedule.visits))
    palettes = rng.permutation(sorted({p.palette for p in pool}))[:len(scenes)]
    new = {}
    for old, pal in zip(scenes, palettes):
        options = [p for p in pool if p.palette == pal]
        new[old] = (options[int(rng.integers(len(options)))], int(rng.integers(LIBRARY_SIZE)))
    return SceneSchedule(visits=tuple(Visit(prompt=new[v.prompt][0], picture=new[v.prompt][1], start=v.start,
                                            stop=v.stop) for v in schedule.visits))
