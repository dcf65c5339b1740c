"""Toy prompts: palette, style and motion, with a canonical English phrasing and a forgiving parser."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from .camera import MOTIONS
from .constants import STYLE_PHRASES
from .world import PALETTES, STYLES, check_palette_style

MOTION_PHRASES: dict[str, str] = {
    "slow_pan": "slow pan",
    "fast_pan": "fast pan",
    "pan_with_pauses": "pan with pauses",
    "loop": "looping pan",
}
"""Canonical phrase of every motion in :data:`~.camera.MOTIONS`."""
DEFAULT_PALETTE, DEFAULT_STYLE, DEFAULT_MOTION = "desert", "mixed", "pan_with_pauses"
"""What :func:`parse_prompt` uses for a part the text does not mention."""


@dataclass(kw_only=True, slots=True, frozen=True)
class ToyPrompt:
    """What a toy clip shows: a palette, a scene style and a camera motion."""

    palette: str = DEFAULT_PALETTE
    """A key of :data:`~.world.PALETTES`."""
    style: str = DEFAULT_STYLE
    """One of :data:`~.world.STYLES`."""
    motion: str = DEFAULT_MOTION
    """One of :data:`~.camera.MOTIONS`."""

    def __post_init__(self) -> None:
        check_palette_style(self.palette, self.style)
        if self.motion not in MOTIONS:
            raise ValueError(f"unknown motion {self.motion!r}; allowed: {', '.join(MOTIONS)}")

    @property
    def text(self) -> str:
        """Canonical English, e.g. ``"a desert panorama, shapes over bands, slow pan"``."""
        return f"a {self.palette} panorama, {STYLE_PHRASES[self.style]}, {MOTION_PHRASES[self.motion]}"


def _parse_style(words: set[str]) -> str:
    shapes = bool(words & {"shape", "shapes"})
    bands = bool(words & {"band", "bands", "stripe", "stripes", "striped"})
    if "mixed" in words or (shapes and bands):
        return "mixed"
    if shapes:
        return "shapes"
    if bands:
        return "bands"
    return DEFAULT_STYLE


def _parse_motion(words: list[str]) -> str:
    if any(w.startswith(("loop", "circl")) for w in words):
        return "loop"
    if any(w.startswith("paus") for w in words):
        return "pan_with_pauses"
    if any(w in {"fast", "quick", "quickly", "rapid", "rapidly"} for w in words):
        return "fast_pan"
    if any(w in {"slow", "slowly"} for w in words):
        return "slow_pan"
    return DEFAULT_MOTION


def parse_prompt(text: str) -> ToyPrompt:
    """Read palette, style and motion from free text (case-insensitive).

    Palette: the first palette name in the text. Style: ``"shapes over bands"`` / ``"mixed"`` / shapes together with
    bands or stripes -> mixed, else ``"shapes"``, else ``"bands"`` / ``"stripes"``. Motion, first match wins:
    ``"loop..."`` / ``"circling"``, ``"pauses"``, ``"fast"``, ``"slow"``. Anything missing falls back to
    desert, mixed, pan_with_pauses. ``parse_prompt(p.text) == p`` for every prompt.
    """
    words = re.findall(r"[a-z]+", text.lower())
    palette = next((w for w in words if w in PALETTES), DEFAULT_PALETTE)
    return ToyPrompt(palette=palette, style=_parse_style(set(words)), motion=_parse_motion(words))


def all_prompts() -> list[ToyPrompt]:
    """Every palette x style x motion combination (72), in a fixed order."""
    return [ToyPrompt(palette=p, style=s, motion=m) for p in PALETTES for s in STYLES for m in MOTIONS]


def random_prompt(rng: np.random.Generator) -> ToyPrompt:
    """A uniformly random combination drawn from ``rng``."""
    return ToyPrompt(
        palette=list(PALETTES)[int(rng.integers(len(PALETTES)))],
        style=STYLES[int(rng.integers(len(STYLES)))],
        motion=MOTIONS[int(rng.integers(len(MOTIONS)))],
    )
