"""Procedural panoramas: a strip several frames wide whose palette and style come from the prompt, layout from a seed.

Toy time scale: one latent frame is one 32 x 32 RGB frame, and 4 of them make a toy second, so the 21-frame
cache of a Wan student covers ~5 s here as it does for Wan video.

Panoramas are mosaics of flat 8 x 8-px cells, the area of one model token (toy codec 4 px x Wan patch 2), and the
camera moves by whole cells, so every frame is 4 x 4 whole tokens. In the first version of this world (pixel detail,
1-4 px steps) the 2-layer toy teacher's samples never panned within the CPU pipeline's budget; on this grid the memory
questions stay the same and the same teacher learns the palettes and the cells, but its frames still do not follow
each other by rigid steps (shift residual in ``context_forcing_core/eval/toy/teachers.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .constants import CELL, FRAME_SIZE, FRAMES_PER_SECOND, PALETTES, STYLES, check_palette_style

__all__ = ["CELL", "FRAME_SIZE", "FRAMES_PER_SECOND", "PALETTES", "STYLES", "check_palette_style", "SceneSpec",
           "render_panorama"]


@dataclass(kw_only=True, slots=True, frozen=True)
class SceneSpec:
    """What a panorama looks like."""

    palette: str = "desert"
    """A key of :data:`PALETTES`."""
    style: str = "mixed"
    """One of :data:`STYLES`."""
    width: int = 8 * FRAME_SIZE
    """Panorama width in pixels, a multiple of :data:`CELL` (it wraps around: column ``width`` is column 0)."""
    seed: int = 0
    """Layout seed."""

    def __post_init__(self) -> None:
        check_palette_style(self.palette, self.style)
        if self.width < 2 * FRAME_SIZE or self.width % CELL:
            raise ValueError(f"panorama width must be a multiple of {CELL} px and at least {2 * FRAME_SIZE} px, "
                             f"got {self.width}")


def _bands(rng: np.random.Generator, colours: np.ndarray, cols: int) -> np.ndarray:
    """(3, rows, cols) cell grid of vertical bands 1-3 cells wide, neighbours always differently coloured."""
    grid = np.empty((3, FRAME_SIZE // CELL, cols), dtype=np.float32)
    x, last = 0, -1
    while x < cols:
        w = int(rng.integers(1, 4))
        c = int(rng.choice([i for i in range(len(colours)) if i != last]))
        grid[:, :, x:x + w] = colours[c][:, None, None]
        x, last = x + w, c
    return grid


def _blocks(rng: np.random.Generator, colours: np.ndarray, grid: np.ndarray) -> None:
    """Paint one block (1-2 cells wide, 1-3 tall, any colour but the ground's) every ~2 cells of width, in place."""
    _, rows, cols = grid.shape
    for _ in range(cols // 2):
        x, y = int(rng.integers(cols)), int(rng.integers(rows))
        w, h = int(rng.integers(1, 3)), int(rng.integers(1, 4))
        xs = np.arange(x, x + w) % cols  # wraps around like the panorama
        ground = grid[:, y, xs[0]]
        choices = [c for c in colours if not np.array_equal(c, ground)]
        grid[:, y:y + h, xs] = choices[int(rng.integers(len(choices)))][:, None, None]


def render_panorama(spec: SceneSpec) -> np.ndarray:
    """Render the scene.

    Returns:
        (3, 32, width) float32 RGB in [0, 1] on a 1/256 grid, flat over every 8 x 8-px cell, with a faint
        deterministic shade per cell so that plain ground still registers.

    """
    rng = np.random.default_rng(spec.seed)
    colours = np.asarray(PALETTES[spec.palette], dtype=np.float32) / 255.0  # (5, 3)
    cols = spec.width // CELL
    if spec.style == "shapes":
        grid = np.broadcast_to(colours[0][:, None, None], (3, FRAME_SIZE // CELL, cols)).copy()
    else:
        grid = _bands(rng, colours, cols)
    if spec.style != "bands":
        _blocks(rng, colours, grid)
    shade = rng.uniform(-0.04, 0.04, size=(1, *grid.shape[1:])).astype(np.float32)  # every cell its own shade
    img = np.clip(grid + shade, 0.0, 1.0).repeat(CELL, axis=1).repeat(CELL, axis=2)  # (3, 32, width)
    # on the 1/256 grid, so the toy codec's float32 (x - 0.5) * 4 is exact and its round trip is bit-exact
    return np.round(img * 256) / np.float32(256)
