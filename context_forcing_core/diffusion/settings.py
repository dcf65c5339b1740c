"""Allowed ranges of the rollout's settings: the one source for the library's checks and the ComfyUI widgets.

The sampler node converts seconds and pixels into latent frames and latent sizes; the library checks those.
"""

from __future__ import annotations

from ..memory.config import Bound

SECONDS = Bound(0.25, 3600.0, integer=False)
"""Video length in seconds (one hour at most; 14,400 latent frames at 4 per second)."""
STEPS = Bound(1, 50)
"""Denoising steps per chunk (students are trained with 4)."""
SHIFT = Bound(0.1, 20.0, integer=False)
"""Timestep shift of the step list (students are trained with 5)."""
PIXELS = Bound(16, 4096)
"""Video width or height in pixels (Wan models; a multiple of :data:`PIXEL_MULTIPLE`)."""
PIXEL_MULTIPLE = 16
"""Wan latents are 1/8 of the pixels and the DiT patches 2 x 2 latents."""
SEED = Bound(0, 2**63 - 1)
"""Random seed (a torch.Generator takes 64-bit seeds)."""
LATENT_FRAMES = Bound(1, 14_400)
"""Latent frames of one rollout (:data:`SECONDS` high at 4 latent frames per second)."""
LATENT_SIDE = Bound(1, 4096 // 8)
"""Latent height or width (:data:`PIXELS` high / 8)."""
LAYER = Bound(0, 63)
"""Transformer layer index shown by the memory inspector."""
DECODE_SCALE = Bound(1, 32)
"""Nearest-neighbour enlargement of decoded toy frames."""
FPS = Bound(1, 120)
"""Frame rate of a written video (Wan2.1's own is 16: 4 latent frames per second, 4 video frames each)."""


def check_pixels(width: int, height: int) -> None:
    """Raise ValueError unless width and height lie in :data:`PIXELS` and are multiples of :data:`PIXEL_MULTIPLE`."""
    for name, value in (("width", width), ("height", height)):
        PIXELS.check(name, value)
        if value % PIXEL_MULTIPLE:
            raise ValueError(f"{name} must be a multiple of {PIXEL_MULTIPLE}, got {value}")
