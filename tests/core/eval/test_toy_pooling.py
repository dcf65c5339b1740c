"""The pooling probe (``eval.toy.pooling``): the exact teacher pools (21 copies beat one at high noise, no spread);
a denoiser that ignores the other frames does not."""

from __future__ import annotations

import torch

from context_forcing_core.eval.toy.pooling import exact, pooling_row, scene_clips
from context_forcing_core.toyworld.exact_teacher import ExactTeacher
from context_forcing_core.toyworld.text import ToyTextEncoder


def test_exact_teacher_pools_and_a_per_frame_denoiser_does_not():
    enc = ToyTextEncoder()
    frames, text = scene_clips(6, enc)
    gen = torch.Generator().manual_seed(0)
    r = pooling_row(exact(ExactTeacher(encoder=enc)), frames, text, 0.97, gen)
    assert r["pooled"] < 0.01 < r["single"] and r["spread"] < 1e-6

    def per_frame(x_t, sigma, text):  # shrinks each frame on its own: no pooling, frames disagree
        return x_t * (1 - sigma[:, None, :, None, None])

    r = pooling_row(per_frame, frames, text, 0.5, gen)
    assert abs(r["pooled"] - r["single"]) < 0.05 and r["spread"] > 0.1
