"""3-D rotary position embedding of Wan2.1, with the temporal position chosen per frame by the caller.

Wan rotates adjacent pairs of a head's channels (interleaved pairing, not rotate-half). The head is split
into a temporal part (44 dims at head width 128) rotated by the frame position, and two spatial parts (42 each)
rotated by the token's row and column. The angle table is built in float64 and the rotation applied in
float32: positions up to ~1000 times frequencies near 1 would lose ~1e-4 rad in float32 angles.
"""

from __future__ import annotations

import torch
from torch import Tensor


def axis_frequencies(dim: int, theta: float = 10000.0) -> Tensor:
    """Frequencies 1 / theta^(2j / dim), j < dim / 2, of one RoPE axis.

    Returns:
        (dim // 2,) float64.

    """
    return 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)


def rope_angles(
    frame_pos: Tensor, height: int, width: int, split: tuple[int, int, int], theta: float = 10000.0
) -> tuple[Tensor, Tensor]:
    """Cos and sin of every (token, pair) angle for frames at the given temporal positions.

    Args:
        frame_pos: (F,) integer temporal position of each frame, in token order.
        height: token rows per frame.
        width: token columns per frame.
        split: head dims given to the (frame, height, width) axes.
        theta: RoPE base.

    Returns:
        cos, sin: (F * height * width, head_dim // 2) float32, tokens ordered (frame, row, column).

    """
    dt, dh, dw = split
    device = frame_pos.device
    ft = frame_pos.to(torch.float64)[:, None] * axis_frequencies(dt, theta).to(device)  # (F, dt/2)
    fh = torch.arange(height, dtype=torch.float64, device=device)[:, None] * axis_frequencies(dh, theta).to(device)
    fw = torch.arange(width, dtype=torch.float64, device=device)[:, None] * axis_frequencies(dw, theta).to(device)
    f, h, w = ft.shape[0], height, width
    angles = torch.cat(
        [
            ft[:, None, None, :].expand(f, h, w, -1),
            fh[None, :, None, :].expand(f, h, w, -1),
            fw[None, None, :, :].expand(f, h, w, -1),
        ],
        dim=-1,
    ).reshape(f * h * w, -1)  # (L, D/2)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate adjacent channel pairs of ``x`` by the given angles, computing in float32.

    Args:
        x: (B, L, H, D) queries or keys.
        cos, sin: (L, D // 2) from :func:`rope_angles`.

    Returns:
        (B, L, H, D) in the dtype of ``x``.

    """
    xf = x.float().unflatten(-1, (-1, 2))  # (B, L, H, D/2, 2)
    x0, x1 = xf[..., 0], xf[..., 1]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    out = torch.stack((x0 * c - x1 * s, x0 * s + x1 * c), dim=-1)
    return out.flatten(-2).to(x.dtype)
