"""The toy world's fixed quantities: frame size and time scale, the cell grid, palettes and styles.

Toy time scale: one latent frame is one 32 x 32 RGB frame, and 4 of them make a toy second, so the 21-frame cache of
a Wan student covers ~5 s here as it does for Wan video. Pictures are mosaics of flat 8 x 8-px cells, the area of one
model token (toy codec 4 px x Wan patch 2), so every frame is 4 x 4 whole tokens.
"""

from __future__ import annotations

FRAME_SIZE = 32
"""Height and width of a toy video frame in pixels."""
FRAMES_PER_SECOND = 4
"""Latent (= RGB) frames per toy second."""
CELL = 8
"""Side of a picture cell in pixels (one model token)."""

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
"""Picture styles: vertical colour bands, blocks on a plain ground, or blocks over bands."""
STYLE_PHRASES: dict[str, str] = {"bands": "vertical bands", "shapes": "shapes on plain ground", "mixed": "shapes over bands"}
"""Canonical phrase of every style in :data:`STYLES` (the prompt text of a scene)."""


def check_palette_style(palette: str, style: str) -> None:
    """Raise ValueError naming the allowed values unless ``palette`` is in :data:`PALETTES` and ``style`` in
    :data:`STYLES`.
    """
    if palette not in PALETTES:
        raise ValueError(f"unknown palette {palette!r}; allowed: {', '.join(PALETTES)}")
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; allowed: {', '.join(STYLES)}")
