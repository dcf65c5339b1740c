"""On-policy scheduled regression: the teacher sees exactly the frames the student's memory holds, teacher forcing
commits the teacher's chunks, every chunk's loss reaches the student."""

from __future__ import annotations

import pytest
import torch

from context_forcing_core.diffusion.prompts import PromptSchedule
from context_forcing_core.memory.config import memory_preset
from context_forcing_core.models.config import toy
from context_forcing_core.objectives.scheduled_regression import memory_frames, scheduled_regression
from tests.conftest import random_model


def _schedule(b=2, switch=6):
    gen = torch.Generator().manual_seed(0)
    return PromptSchedule(texts=[torch.randn(b, 16, 4096, generator=gen) for _ in range(2)], switch_frames=[switch])


def test_teacher_sees_the_memory_and_teacher_forcing_commits_its_chunks():
    model = random_model(toy()).train()
    mem = memory_preset("infinity_rope")  # sink 1 + 2 recent frames: the context is visibly bounded
    seen, outputs = [], []

    def teacher(z, text, context, frames):
        seen.append((list(frames), None if context is None else context.clone(), text.clone()))
        out = torch.randn(z.shape, generator=torch.Generator().manual_seed(frames.start))
        outputs.append(out)
        return out

    sched = _schedule()
    losses, latents = scheduled_regression(model, teacher, sched, num_latent_frames=12, memory=mem,
                                           generator=torch.Generator().manual_seed(1), teacher_forced=True)
    assert len(losses) == 4 and all(torch.isfinite(torch.tensor(losses)))
    torch.testing.assert_close(latents, torch.cat(outputs, dim=2))  # teacher forcing: its chunks are the video
    assert seen[0][1] is None
    for frames, context, text in seen[1:]:
        start = frames[0]
        held = [0] + [start - 2, start - 1]  # sink frame 0 and the fast window's two frames
        torch.testing.assert_close(context, latents[:, :, held])
        torch.testing.assert_close(text, sched.texts[int(start >= 6)])
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and sum(float(g.abs().sum()) for g in grads) > 0


def test_short_teacher_sees_its_window_not_the_memory():
    model = random_model(toy()).train()
    mem = memory_preset("infinity_rope")  # holds frame 0 and 2 recent frames; the window reaches further back
    seen, outputs = [], []

    def teacher(z, text, context, frames):
        seen.append((list(frames), None if context is None else context.clone()))
        outputs.append(torch.randn(z.shape, generator=torch.Generator().manual_seed(frames.start)))
        return outputs[-1]

    _, latents = scheduled_regression(model, teacher, _schedule(), num_latent_frames=18, memory=mem,
                                      generator=torch.Generator().manual_seed(1), teacher_forced=True,
                                      teacher_window=12)
    assert seen[0][1] is None
    for frames, context in seen[1:]:
        held = list(range(max(0, frames[0] - 9), frames[0]))  # window 12 = 9 earlier frames + the chunk
        torch.testing.assert_close(context, latents[:, :, held])
    assert seen[-1][1].shape[2] == 9  # frames 6..14: the sink frame 0 the memory holds is not among them


def test_reading_term_reads_the_students_own_committed_sample_with_the_teachers_context():
    model = random_model(toy()).train()
    mem = memory_preset("infinity_rope")
    contexts, reads = [], []

    def teacher(z, text, context, frames):
        contexts.append(context)
        return torch.zeros_like(z)

    def read(own, text, context, invent):
        reads.append((own.clone(), context))
        return torch.zeros_like(own)

    got: list[float] = []
    losses, latents = scheduled_regression(model, teacher, _schedule(b=1), num_latent_frames=9, memory=mem,
                                           generator=torch.Generator().manual_seed(3), read=read, read_weight=2.0,
                                           read_losses=got)
    assert len(reads) == len(got) == 3
    for c, ((own, context), teacher_context) in enumerate(zip(reads, contexts)):
        torch.testing.assert_close(own, latents[:, :, 3 * c:3 * c + 3])  # on-policy: the read sample is committed
        assert context is teacher_context
    torch.testing.assert_close(torch.tensor(got), torch.stack([(o**2).mean() for o, _ in reads]))
    with_read = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    base, _ = scheduled_regression(model, teacher, _schedule(b=1), num_latent_frames=9, memory=mem,
                                   generator=torch.Generator().manual_seed(3), read=read, read_weight=0.0)
    assert abs(losses[0] - base[0]) < 1e-6  # the first chunk's regression is the same; the reading term is apart
    assert any(not torch.allclose(a, p.grad) for a, p in zip(with_read, model.parameters()))  # and it trains


def test_the_reader_is_told_which_chunks_must_invent():
    """A chunk invents when no frame of the teacher's context was shown under its prompt's text: the first chunk of
    each new scene does, a visit's later chunks and a return the memory still holds (here by its sink frame) do not,
    per batch item (item 1's third prompt is a new scene, item 0's the first one returning)."""
    model = random_model(toy()).train()
    gen = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(2, 16, 4096, generator=gen) for _ in range(3))
    returning = torch.stack([a[0], c[1]])
    sched = PromptSchedule(texts=[a, b, returning], switch_frames=[3, 9])
    told = []

    def read(own, text, context, invent):
        told.append(invent.tolist())
        return torch.zeros_like(own)

    scheduled_regression(model, lambda z, text, context, frames: torch.zeros_like(z), sched, num_latent_frames=12,
                         memory=memory_preset("infinity_rope"), generator=torch.Generator().manual_seed(3),
                         read=read, read_weight=1.0)
    assert told == [[True, True], [True, True], [False, False], [False, True]]


def test_reading_onto_the_endpoint_targets_the_teachers_chunk_and_needs_no_reader():
    model = random_model(toy()).train()
    mem = memory_preset("infinity_rope")
    targets = []

    def teacher(z, text, context, frames):
        targets.append(torch.randn(z.shape, generator=torch.Generator().manual_seed(frames.start)))
        return targets[-1]

    got: list[float] = []
    _, latents = scheduled_regression(model, teacher, _schedule(b=1), num_latent_frames=9, memory=mem,
                                      generator=torch.Generator().manual_seed(3), read_weight=1.0, read_losses=got,
                                      read_onto="endpoint")
    own = [latents[:, :, 3 * c:3 * c + 3] for c in range(3)]  # on-policy: the committed samples are the read ones
    torch.testing.assert_close(torch.tensor(got), torch.stack([((o - t) ** 2).mean() for o, t in zip(own, targets)]))
    with pytest.raises(ValueError, match="read_onto"):
        scheduled_regression(model, teacher, _schedule(b=1), num_latent_frames=9, memory=mem,
                             generator=torch.Generator().manual_seed(3), read_weight=1.0, read_onto="mode")


def test_on_policy_commits_the_students_own_samples_and_memory_frames_is_the_union():
    model = random_model(toy()).train()
    mem = memory_preset("context_forcing")
    targets = []

    def teacher(z, text, context, frames):
        targets.append(torch.zeros_like(z))
        return targets[-1]

    _, latents = scheduled_regression(model, teacher, _schedule(b=1), num_latent_frames=12, memory=mem,
                                      generator=torch.Generator().manual_seed(2))
    assert latents.shape == (1, 48, 12, 8, 8) and latents.abs().sum() > 0  # not the teacher's zeros
    from context_forcing_core.memory.slow_fast import SlowFastMemory
    empty = SlowFastMemory(mem, model.config)
    assert memory_frames(empty) == []


def _fixed_teacher(z, text, context, frames):
    return torch.randn(z.shape, generator=torch.Generator().manual_seed(100 + frames.start))


def _run(model, memory_grad, mem):
    return scheduled_regression(model, _fixed_teacher, _schedule(), num_latent_frames=12, memory=mem,
                                generator=torch.Generator().manual_seed(3), teacher_forced=True,
                                memory_grad=memory_grad)


def test_memory_grad_is_the_full_derivative_through_what_earlier_chunks_wrote():
    """Same forward either way; with ``memory_grad`` the gradient matches a finite difference of the rollout's
    loss (which moves the cached K/V too), the detached default's does not."""
    mem = memory_preset("infinity_rope")
    model = random_model(toy()).train().double()
    grads = {}
    for flag in (False, True):
        model.zero_grad()
        losses, _ = _run(model, flag, mem)
        grads[flag] = [p.grad.clone() for p in model.parameters()]
        grads[(flag, "loss")] = losses
    assert grads[(False, "loss")] == grads[(True, "loss")]
    params = list(model.parameters())
    gen = torch.Generator().manual_seed(4)
    direction = [torch.randn(p.shape, generator=gen, dtype=p.dtype) for p in params]
    eps = 1e-4

    def loss_at(sign):
        with torch.no_grad():
            for p, d in zip(params, direction):
                p.add_(sign * eps * d)
        value = sum(_run(model, False, mem)[0]) / 4
        with torch.no_grad():
            for p, d in zip(params, direction):
                p.sub_(sign * eps * d)
        return value

    numeric = (loss_at(1) - loss_at(-1)) / (2 * eps)
    analytic = {flag: float(sum((g * d).sum() for g, d in zip(grads[flag], direction))) for flag in (False, True)}
    assert abs(analytic[True] - numeric) < 1e-4 * max(1.0, abs(numeric))
    assert abs(analytic[False] - numeric) > 1e-3 * abs(numeric)
