"""Context-teacher continuation: against the plain teacher ODE (empty context) and a hand-assembled window."""

from __future__ import annotations

import pytest
import torch

from context_forcing_core.diffusion.schedule import NUM_TRAIN_TIMESTEPS
from context_forcing_core.models.config import model_preset
from context_forcing_core.models.wan import WanModel
from context_forcing_core.objectives.context_teacher import ContextLayout, context_indices
from context_forcing_core.objectives.continuation import continue_with_teacher
from context_forcing_core.objectives.ode import ode_sigmas, teacher_trajectory


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    return WanModel(model_preset("micro")).eval()


def _text(b: int = 1):
    gen = torch.Generator().manual_seed(3)
    return torch.randn(b, 4, 8, generator=gen), torch.zeros(b, 4, 8)


def test_empty_context_window_equals_the_teacher_ode(teacher):
    text, uncond = _text(2)
    layout = ContextLayout(target=5)
    out = continue_with_teacher(teacher, torch.zeros(2, 4, 0, 4, 4), text, uncond, num_frames=5, layout=layout,
                                num_steps=6, generator=torch.Generator().manual_seed(7))
    noise = torch.randn((2, 4, 5, 4, 4), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ref = teacher_trajectory(teacher, noise, text, uncond, num_steps=6, student_steps=(1000.0, 500.0)).x0
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_second_window_sees_the_layout_context_clean_at_t0(teacher):
    """Rebuild the second window by hand: context frames chosen by context_indices, timesteps 0 on them."""
    text, uncond = _text()
    layout = ContextLayout(sink=1, slow=1, slow_stride_frames=2, recent=2, target=3)
    context = torch.randn(1, 4, 6, 4, 4, generator=torch.Generator().manual_seed(1))
    out = continue_with_teacher(teacher, context, text, uncond, num_frames=5, layout=layout, num_steps=4,
                                guidance=2.0, generator=torch.Generator().manual_seed(5))
    assert out.shape == (1, 4, 5, 4, 4)
    gen = torch.Generator().manual_seed(5)
    torch.randn((1, 4, 3, 4, 4), generator=gen)  # the first window's noise
    video = torch.cat([context, out[:, :, :3]], dim=2)  # 9 frames so far
    idx = context_indices(9, layout)
    assert idx == [0, 5, 7, 8]  # sink 0, recent 7..8, one slow frame a stride (2) before 7
    ctx, x = video[:, :, idx], torch.randn((1, 4, 2, 4, 4), generator=gen)
    sigmas = ode_sigmas(4)
    both = teacher.encode_text(torch.cat([text, uncond]))
    with torch.no_grad():
        for i in range(4):
            t = torch.tensor([[0.0] * 4 + [float(sigmas[i]) * NUM_TRAIN_TIMESTEPS] * 2] * 2)
            inp = torch.cat([ctx, x], dim=2)
            v_c, v_u = teacher(torch.cat([inp, inp]), t, both)[:, :, 4:].chunk(2)
            x = x + float(sigmas[i + 1] - sigmas[i]) * (v_u + 2.0 * (v_c - v_u))
    torch.testing.assert_close(out[:, :, 3:], x, rtol=1e-4, atol=1e-5)


def test_context_changes_the_continuation_and_same_seed_same_output(teacher):
    text, uncond = _text()
    a, b = (torch.randn(1, 4, 6, 4, 4, generator=torch.Generator().manual_seed(s)) for s in (1, 2))
    run = [continue_with_teacher(teacher, ctx, text, uncond, num_frames=3, layout=ContextLayout(target=3), num_steps=3,
                                 generator=torch.Generator().manual_seed(0)) for ctx in (a, a, b)]
    torch.testing.assert_close(run[0], run[1], rtol=0, atol=0)
    assert not torch.allclose(run[0], run[2])


def test_bad_arguments_are_refused(teacher):
    text, uncond = _text()
    with pytest.raises(ValueError, match="num_frames"):
        continue_with_teacher(teacher, torch.zeros(1, 4, 2, 4, 4), text, uncond, num_frames=0)
    with pytest.raises(ValueError, match="context"):
        continue_with_teacher(teacher, torch.zeros(4, 2, 4, 4), text, uncond, num_frames=3)
