"""Flow-matching maths: the warped step table, shift, and the noising / x0 inverses."""

from __future__ import annotations

import pytest
import torch

from context_forcing_core.diffusion.schedule import add_noise, flow_target, shift_sigma, warp_timesteps, x0_from_flow


def test_warped_default_steps_match_the_students_table():
    assert warp_timesteps() == pytest.approx([1000.0, 937.5, 833.3333333, 625.0])


def test_shift_one_is_identity_and_shift_is_monotone():
    s = torch.linspace(0, 1, 11)
    assert torch.allclose(shift_sigma(s, 1.0), s)
    shifted = shift_sigma(s, 5.0)
    assert torch.all(shifted[1:] > shifted[:-1]) and shifted[0] == 0 and shifted[-1] == 1


def test_x0_from_flow_inverts_noising_with_per_frame_sigmas():
    torch.manual_seed(0)
    x0, eps = torch.randn(2, 4, 3, 5, 5), torch.randn(2, 4, 3, 5, 5)
    sigma = torch.rand(2, 3)
    x_t = add_noise(x0, eps, sigma)
    assert torch.allclose(x0_from_flow(x_t, flow_target(x0, eps), sigma), x0, atol=1e-6)
    # frame j of sample i is noised with sigma[i, j]
    assert torch.allclose(x_t[1, :, 2], (1 - sigma[1, 2]) * x0[1, :, 2] + sigma[1, 2] * eps[1, :, 2])


@pytest.mark.parametrize("steps", [(250, 500), (1000, 1200), (1000, 0)])
def test_bad_step_lists_are_rejected(steps):
    with pytest.raises(ValueError, match="steps"):
        warp_timesteps(steps)
