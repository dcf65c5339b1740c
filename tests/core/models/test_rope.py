"""``rope_angles`` + ``apply_rope`` (float32 application) against upstream's float64 complex RoPE.

The reference is ``reference_wan.rope_apply``: complex128 tables ``polar(1, outer(arange(1024), freqs))`` per axis
(44/42/42 head dims at head width 128), ``view_as_complex`` on adjacent pairs, as Wan-Video/Wan2.1
wan/modules/model.py. The implementation rounds cos/sin (computed in float64) to float32 and rotates in
float32, so its relative error is a few float32 ulps (~1e-7); we assert 1e-5. An angle table built in float32
instead would be off by up to ~1023 * 6e-8 ~ 6e-5 rad at the last positions and fail.
"""

from __future__ import annotations

import torch
from reference_wan import rope_apply, rope_tables

from context_forcing_core.models.config import tiny
from context_forcing_core.models.rope import apply_rope, rope_angles

HEAD_DIM = 128
SPLIT = (44, 42, 42)


def _rotate(x: torch.Tensor, frame_pos: torch.Tensor, h: int, w: int) -> torch.Tensor:
    cos, sin = rope_angles(frame_pos, h, w, SPLIT)
    assert cos.dtype == sin.dtype == torch.float32
    assert cos.shape == sin.shape == (frame_pos.numel() * h * w, HEAD_DIM // 2)
    return apply_rope(x, cos, sin)


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b).abs().max() / b.abs().max()).item()


def test_split_is_44_42_42():
    assert tiny().head_dim == HEAD_DIM
    assert tiny().rope_split == SPLIT


def test_matches_complex_reference_up_to_position_1023():
    freqs = rope_tables(HEAD_DIM)
    g = torch.Generator().manual_seed(0)
    cases = [
        (torch.arange(1024), 1, 1),  # every temporal position
        (torch.tensor([1023, 0, 517]), 1024, 1),  # every row position, out-of-order frame positions
        (torch.tensor([1000]), 2, 1024),  # every column position
        (torch.tensor([7, 1022, 3]), 5, 7),  # a mixed grid
    ]
    for frame_pos, h, w in cases:
        x = torch.randn(2, frame_pos.numel() * h * w, 2, HEAD_DIM, generator=g)
        out = _rotate(x, frame_pos, h, w)
        assert out.dtype == torch.float32 and out.shape == x.shape
        ref = rope_apply(x, (frame_pos.numel(), h, w), freqs, frame_pos=frame_pos)
        err = _rel_err(out, ref)
        assert err < 1e-5, f"relative error {err:.3g} for grid {(frame_pos.tolist()[:3], h, w)}"
        assert (out - x).abs().max() > 0.1  # the rotation is not the identity


def test_rotation_preserves_each_pair_norm():
    g = torch.Generator().manual_seed(1)
    frame_pos = torch.tensor([0, 1, 500, 1023])
    x = torch.randn(3, 4 * 6 * 9, 2, HEAD_DIM, generator=g)
    out = _rotate(x, frame_pos, 6, 9)
    n_in = x.unflatten(-1, (-1, 2)).double().norm(dim=-1)
    n_out = out.unflatten(-1, (-1, 2)).double().norm(dim=-1)
    assert ((n_out - n_in).abs() / n_in).max().item() < 1e-6


def test_dot_product_depends_only_on_relative_position():
    g = torch.Generator().manual_seed(2)
    q = torch.randn(HEAD_DIM, generator=g)
    k = torch.randn(HEAD_DIM, generator=g)
    h = w = 40

    def score(p: tuple[int, int, int], s: tuple[int, int, int]) -> float:
        """q at position p and k at p + s (frame, row, column), both rotated; returns q . k."""
        frame_pos = torch.tensor([p[0], p[0] + s[0]])
        x = torch.zeros(1, 2 * h * w, 1, HEAD_DIM)
        iq = (0 * h + p[1]) * w + p[2]
        ik = (1 * h + p[1] + s[1]) * w + p[2] + s[2]
        x[0, iq, 0], x[0, ik, 0] = q, k
        out = _rotate(x, frame_pos, h, w)
        return torch.dot(out[0, iq, 0].double(), out[0, ik, 0].double()).item()

    bound = (q.norm() * k.norm()).item()  # |q . k| <= bound for any rotation
    for s in [(0, 0, 0), (1, 0, 0), (5, 3, -2), (-300, 7, 11), (21, -13, 4)]:
        bases = [(400, 15, 15), (700, 20, 13), (1000 - max(s[0], 0), 17, 20), (max(-s[0], 0) + 2, 13, 17)]
        scores = [score(p, s) for p in bases]
        spread = max(scores) - min(scores)
        assert spread < 1e-5 * bound, f"offset {s}: q.k varies by {spread:.3g} across positions ({scores})"
    # and different offsets do give different scores (the test is not vacuous)
    assert abs(score((10, 5, 5), (0, 0, 0)) - score((10, 5, 5), (3, 2, 1))) > 1e-2 * bound
