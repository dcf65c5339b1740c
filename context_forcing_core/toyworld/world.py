"""Procedural panoramas: a strip several frames wide whose palette and style come from the prompt, layout from a seed.

Toy time scale: one latent frame is one 32 x 32 RGB frame, and 4 of them make a toy second, so the 21-frame
cache of a Wan student covers ~5 s here as it does for Wan video.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRAME_SIZE = 32
"""Height and width of a toy video frame in pixels."""
FRAMES_PER_SECOND = 4
"""Latent (= RGB) frames per toy second."""

PALETTES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "desert": ((237, 201, 175), (194, 150, 95), (160, 82, 45), (250, 230, 160), (120, 90, 60)),
    "ocean": ((0, 105, 148), (72, 160, 200), (10, 50, 90), (180, 225, 240), (0, 160, 140)),
    "forest": ((34, 85, 34), (85, 130, 60), (140, 180, 90), (90, 60, 30), (20, 50, 25)),
    "neon": ((255, 20, 147), (0, 255, 255), (57, 255, 20), (255, 240, 0), (40, 0, 80)),
    "snow": ((245, 248, 255), (200, 215, 235), (140, 160, 190), (90, 110, 140), (230, 235, 250)),
    "sunset": ((255, 94, 77), (255, 165, 0), (120, 40, 110), (250, 210, 120), (60, 30, 70)),
}
"""Five RGB colours per palette name."""
STYLES = ("bands", "shapes", "mixed")
"""Scene styles: vertical colour bands, shapes on a plain ground, or shapes over bands."""


@dataclass(kw_only=True, slots=True, frozen=True)
class SceneSpec:
    """What a panorama looks like."""

    palette: str = "desert"
    """A key of :data:`PALETTES`."""
    style: str = "mixed"
    """One of :data:`STYLES`."""
    width: int = 8 * FRAME_SIZE
    """Panorama width in pixels (it wraps around: column ``width`` is column 0)."""
    seed: int = 0
    """Layout seed."""

    def __post_init__(self) -> None:
        if self.palette not in PALETTES:
            raise ValueError(f"unknown palette {self.palette!r}; allowed: {', '.join(PALETTES)}")
        if self.style not in STYLES:
            raise ValueError(f"unknown style {self.style!r}; allowed: {', '.join(STYLES)}")
        if self.width < 2 * FRAME_SIZE:
            raise ValueError(f"panorama width must be at least {2 * FRAME_SIZE} px, got {self.width}")


def _bands(rng: np.random.Generator, colours: np.ndarray, width: int) -> np.ndarray:
    """(3, H, width) vertical bands of random widths 4..24 px, neighbours always differently coloured."""
    img = np.empty((3, FRAME_SIZE, width), dtype=np.float32)
    x, last = 0, -1
    while x < width:
        w = int(rng.integers(4, 25))
        c = int(rng.choice([i for i in range(len(colours)) if i != last]))
        img[:, :, x:x + w] = colours[c][:, None, None]
        x, last = x + w, c
    return img


def _shapes(rng: np.random.Generator, colours: np.ndarray, img: np.ndarray) -> None:
    """Draw one random shape (disc, box or triangle) every ~10 px of width, in place."""
    _, h, width = img.shape
    yy, xx = np.mgrid[0:h, 0:width]
    for _ in range(width // 10):
        cx, cy = rng.uniform(0, width), rng.uniform(0, h)
        r = rng.uniform(3, 8)
        colour = colours[int(rng.integers(len(colours)))][:, None]
        dx = (xx - cx + width / 2) % width - width / 2  # wrap-around distance
        kind = int(rng.integers(3))
        if kind == 0:
            mask = dx**2 + (yy - cy) ** 2 <= r**2
        elif kind == 1:
            mask = (np.abs(dx) <= r) & (np.abs(yy - cy) <= r * 0.6)
        else:
            mask = (yy - cy <= r) & (yy - cy >= -r) & (np.abs(dx) <= (yy - cy + r) / 2)
        img[:, mask] = colour


def render_panorama(spec: SceneSpec) -> np.ndarray:
    """Render the scene.

    Returns:
        (3, 32, width) float32 RGB in [0, 1] on a 1/256 grid, with a faint deterministic texture so flat areas
        still register.

    """
    rng = np.random.default_rng(spec.seed)
    colours = np.asarray(PALETTES[spec.palette], dtype=np.float32) / 255.0  # (5, 3)
    if spec.style == "shapes":
        img = np.broadcast_to(colours[0][:, None, None], (3, FRAME_SIZE, spec.width)).copy()
    else:
        img = _bands(rng, colours, spec.width)
    if spec.style != "bands":
        _shapes(rng, colours, img)
    texture = rng.uniform(-0.04, 0.04, size=(1, FRAME_SIZE, spec.width)).astype(np.float32)
    # on the 1/256 grid, so the toy codec's float32 (x - 0.5) * 4 is exact and its round trip is bit-exact
    return np.round(np.clip(img + texture, 0.0, 1.0) * 256) / np.float32(256)
