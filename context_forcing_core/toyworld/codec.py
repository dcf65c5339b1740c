"""The toy "VAE": 4 x 4 space-to-depth plus a power-of-two affine normalisation, invertible without loss.

Exactness: the space-to-depth part is a permutation. ``normalize`` computes ``(raw - 0.5) * 4`` in float32; the
multiplication is exact, the subtraction is exact for every value >= 0.25 and, below 0.25, for every value on the
grid of multiples of 2**-25 (all 8- or 16-bit images). Off that grid float32 rounds ``raw - 0.5`` to the grid, so
``decode(encode(x)) == snap(x)`` bit for bit for any x in [0, 1] and ``== x`` exactly when ``snap(x) == x``;
``snap`` moves a value by at most 2**-26 (~1.5e-8). ``encode(decode(z)) == z`` for every ``z`` that ``encode`` returns.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor

from .constants import FRAME_SIZE

_GRID = 2.0**25


class ToyCodec:
    """Frames (B, T, 3, 32, 32) in [0, 1] <-> latents (B, 48, T, 8, 8), laid out like Wan VAE latents (B, C, T, H, W)."""

    latent_channels = 48
    """Latent channels: 3 colours x 4 x 4 pixels per block (ordered colour, block row, block column)."""
    spatial_factor = 4
    """Pixels per latent cell along each side."""
    temporal_factor = 1
    """RGB frames per latent frame."""
    frame_size = FRAME_SIZE
    """Side of an RGB frame in pixels."""
    shift = 0.5
    """Subtracted before scaling."""
    scale = 4.0
    """Multiplied after shifting (a power of two, so it is exact)."""

    @property
    def latent_size(self) -> int:
        """Side of a latent frame (8)."""
        return self.frame_size // self.spatial_factor

    def space_to_depth(self, frames: Tensor) -> Tensor:
        """(T, 3, 32, 32) or (B, T, 3, 32, 32) frames -> (B, 48, T, 8, 8) raw latents, a pure rearrangement."""
        if frames.ndim == 4:
            frames = frames[None]
        f, p = self.frame_size, self.spatial_factor
        if frames.ndim != 5 or tuple(frames.shape[2:]) != (3, f, f):
            raise ValueError(f"expected frames shaped (T, 3, {f}, {f}) or (B, T, 3, {f}, {f}), got {tuple(frames.shape)}")
        return rearrange(frames, "b t c (h p1) (w p2) -> b (c p1 p2) t h w", p1=p, p2=p)

    def depth_to_space(self, raw: Tensor) -> Tensor:
        """(B, 48, T, 8, 8) raw latents -> (B, T, 3, 32, 32) frames, the inverse of :meth:`space_to_depth`."""
        self._check_latents(raw)
        p = self.spatial_factor
        return rearrange(raw, "b (c p1 p2) t h w -> b t c (h p1) (w p2)", p1=p, p2=p)

    def normalize(self, raw: Tensor) -> Tensor:
        """Raw latents in [0, 1] -> normalised latents ``(raw - 0.5) * 4`` in [-2, 2], same shape."""
        return (raw - self.shift) * self.scale

    def denormalize(self, latents: Tensor) -> Tensor:
        """Normalised latents -> raw latents ``latents / 4 + 0.5``, same shape."""
        return latents / self.scale + self.shift

    def encode(self, frames: Tensor) -> Tensor:
        """Encode RGB frames.

        Args:
            frames: (T, 3, 32, 32) or (B, T, 3, 32, 32) float32 in [0, 1].

        Returns:
            (B, 48, T, 8, 8) float32 latents (B = 1 for unbatched input).

        """
        return self.normalize(self.space_to_depth(frames.float()))

    def decode(self, latents: Tensor) -> Tensor:
        """Decode latents.

        Args:
            latents: (B, 48, T, 8, 8).

        Returns:
            (B, T, 3, 32, 32) RGB frames.

        """
        self._check_latents(latents)
        return self.depth_to_space(self.denormalize(latents))

    @staticmethod
    def snap(frames: Tensor) -> Tensor:
        """Round values to the grid on which the round trip is the identity (moves each value by <= 2**-26)."""
        return torch.where(frames >= 0.25, frames, torch.round(frames * _GRID) / _GRID)

    def _check_latents(self, latents: Tensor) -> None:
        c, s = self.latent_channels, self.latent_size
        if latents.ndim != 5 or latents.shape[1] != c or tuple(latents.shape[3:]) != (s, s):
            raise ValueError(f"expected latents shaped (B, {c}, T, {s}, {s}), got {tuple(latents.shape)}")
