"""scheduled_regression computes what one pass per step level and per sampling step would (the computation it
replaced, written out here from the public building blocks): the same losses, committed latents and gradients, with
the exact teacher and its reader, in float tolerance (batched passes sum in another order)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from context_forcing_core.diffusion.sampler import recache_fast_window, sample_chunk
from context_forcing_core.diffusion.schedule import DEFAULT_SHIFT, DEFAULT_STEPS, add_noise, warp_timesteps, x0_from_flow
from context_forcing_core.memory.config import memory_preset
from context_forcing_core.memory.slow_fast import SlowFastMemory
from context_forcing_core.models.config import toy
from context_forcing_core.objectives.scheduled_regression import inventing, memory_frames, scheduled_regression
from context_forcing_core.toyworld.exact_teacher import ExactTeacher, exact_sample, reading
from context_forcing_core.toyworld.scene_rollout import encoder_for, prompt_schedule
from context_forcing_core.toyworld.scenes import all_scene_prompts, random_schedule, relabel_schedule
from tests.conftest import random_model

TOLERANCE = dict(rtol=1e-5, atol=1e-6)
"""Losses. Batched passes round differently in the last bits (a matrix product of a few rows, e.g. the time
embedding's, takes another kernel than of many): measured up to 1e-6 on losses of ~1-10."""
LATENT_ATOL = 2e-5
"""Committed latents (~10 at most): an on-policy rollout feeds the last bits back through 8 chunks; measured 5e-6."""
GRAD_RTOL = 1e-5
"""Gradients, relative to each tensor's largest entry: measured 2e-6."""


def one_pass_per_level(student, teacher, schedule, *, num_latent_frames, memory, generator, teacher_forced=False,
                       loss_scale=1.0, steps=DEFAULT_STEPS, shift=DEFAULT_SHIFT, latent_size=(8, 8),
                       memory_grad=False, level_losses=None, teacher_window=None, read=None, read_weight=0.0,
                       read_losses=None, read_onto="reading"):
    """The rollout as scheduled_regression computed it before its passes were batched: every step level and every
    sampling step a pass of its own, the prompt encoded anew for every chunk and re-cache."""
    chunk = memory.chunk_frames
    reads = read_weight > 0 and (read is not None or read_onto == "endpoint")
    seen = 0 if teacher_window is None else teacher_window - chunk
    timesteps = warp_timesteps(steps, shift)
    num_chunks = num_latent_frames // chunk
    mem = SlowFastMemory(memory, student.config, keep_grad=memory_grad)
    write_grad = torch.enable_grad if memory_grad else torch.no_grad
    total = 0.0
    b = schedule.texts[0].shape[0]
    shape = (b, student.config.in_channels, chunk, *latent_size)
    committed, losses, chunks, prompt = {}, [], [], -1
    for c in range(num_chunks):
        frames = range(c * chunk, (c + 1) * chunk)
        wanted = schedule.prompt_at(frames.start)
        text = schedule.texts[wanted]
        if wanted != prompt:
            if c > 0:
                with write_grad():
                    recent = {f: committed[f] for f in mem.fast_frames()}
                    recache_fast_window(student, mem, student.encode_text(text), recent)
            prompt = wanted
        held = memory_frames(mem) if teacher_window is None else list(range(max(0, frames.start - seen), frames.start))
        context = torch.stack([committed[f] for f in held], dim=2) if held else None
        z = torch.randn(shape, generator=generator)
        target = teacher(z, text, context, frames).detach()
        mem.begin_chunk(frames)
        inputs = [(z, timesteps[0])]
        for t in timesteps[1:]:
            inputs.append((add_noise(target, torch.randn(shape, generator=generator), t / 1000.0), t))
        ctx = student.encode_text(text)
        loss, per_level = 0.0, []
        for x_t, t in inputs:
            flow = student(x_t, torch.full((b, chunk), float(t)), ctx, attention=mem.attention()).float()
            mse = F.mse_loss(x0_from_flow(x_t, flow, t / 1000.0), target)
            per_level.append(float(mse.detach()))
            loss = loss + mse / len(inputs)
        if level_losses is not None:
            level_losses.append(per_level)
        losses.append(float(loss.detach()))
        own = None

        def chunk_flow(x, t, c=ctx):
            return student(x, t, c, attention=mem.attention())

        if reads:
            own = sample_chunk(chunk_flow, z, timesteps, generator=generator, grad=True)
            goal = target if read_onto == "endpoint" else read(own.detach(), text, context,
                                                                inventing(schedule, wanted, held))
            mse = F.mse_loss(own, goal.detach())
            if read_losses is not None:
                read_losses.append(float(mse.detach()))
            loss = loss + read_weight * mse
        if memory_grad:
            total = total + loss * loss_scale / num_chunks
        else:
            (loss * loss_scale / num_chunks).backward()
        with torch.no_grad():
            if teacher_forced:
                x0 = target
            elif own is not None:
                x0 = own.detach()
            else:
                x0 = sample_chunk(chunk_flow, z, timesteps, generator=generator)
        with write_grad():
            student(x0, torch.zeros(b, chunk), ctx, attention=mem.attention(commit=True))
        mem.end_chunk()
        chunks.append(x0.detach())
        committed.update({f: x0[:, :, i].detach() for i, f in enumerate(frames)})
        keep = set(memory_frames(mem)) | set(range(frames.stop - seen, frames.stop))
        committed = {f: x for f, x in committed.items() if f in keep}
    if memory_grad:
        total.backward()
    return losses, torch.cat(chunks, dim=2)


@pytest.fixture(scope="module")
def world():
    """The toy student's architecture (random weights), the exact teacher, and a batch of relabelled visit schedules
    of 24 frames (cuts and returns: re-caches, contexts that show the prompt and that do not)."""
    cfg = toy()
    teacher = ExactTeacher(encoder=encoder_for(random_model(cfg)))
    rng = np.random.default_rng(3)
    base = random_schedule(rng, num_frames=24, num_scenes=3, visit_units=(1, 1), prompts=all_scene_prompts())
    schedules = [base, relabel_schedule(base, rng)]
    return cfg, teacher, prompt_schedule(schedules, teacher.encoder)


def _rollout(fn, cfg, teacher, schedule, model=None, **kwargs):
    model = random_model(cfg).train() if model is None else model
    levels, reads = [], []

    def teacher_fn(z, text, context, frames):
        return exact_sample(teacher, text, num_frames=z.shape[2], context=context, steps=8, noise=z,
                            generator=torch.Generator().manual_seed(0))

    def read_fn(own, text, context, invent):
        return reading(teacher, own, text, context)

    losses, latents = fn(model, teacher_fn, schedule, num_latent_frames=24, memory=memory_preset("context_forcing"),
                         generator=torch.Generator().manual_seed(7), loss_scale=0.5, level_losses=levels,
                         read=read_fn, read_losses=reads, **kwargs)
    grads = {n: p.grad for n, p in model.named_parameters()}
    return losses, levels, reads, latents, grads


CASES = {
    "stage2": dict(memory_grad=True, read_weight=5.0),  # the scene world's Stage 2 preset
    "stage2-teacher-forced": dict(memory_grad=True, read_weight=5.0, teacher_forced=True),
    "detached-memory": dict(read_weight=5.0),
    "no-reading-on-policy": dict(memory_grad=True),
    "no-reading-detached": dict(),
    "endpoint": dict(read_weight=1.0, read_onto="endpoint"),
    "short-teacher": dict(read_weight=5.0, memory_grad=True, teacher_window=12),
    "one-step": dict(read_weight=5.0, memory_grad=True, steps=(1000.0,)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_batched_rollout_is_the_one_pass_per_level_rollout(world, case):
    cfg, teacher, schedule = world
    want = _rollout(one_pass_per_level, cfg, teacher, schedule, **CASES[case])
    got = _rollout(scheduled_regression, cfg, teacher, schedule, **CASES[case])
    names = ("losses", "level losses", "read losses")
    for name, a, b in zip(names, got[:3], want[:3]):
        assert len(a) == len(b), name
        torch.testing.assert_close(torch.tensor(a), torch.tensor(b), **TOLERANCE, msg=name)
    assert len(got[0]) == 8 and (len(got[2]) == 8) == bool(CASES[case].get("read_weight"))
    torch.testing.assert_close(got[3], want[3], rtol=0, atol=LATENT_ATOL)
    assert got[4].keys() == want[4].keys()
    for name, grad in want[4].items():
        assert grad is not None and got[4][name] is not None, name
        assert float((got[4][name] - grad).abs().max()) <= GRAD_RTOL * float(grad.abs().max()), name


@pytest.mark.parametrize("memory_grad", [True, False], ids=["memory-grad", "detached-memory"])
def test_checkpointed_rollout_has_the_same_gradients(world, memory_grad):
    """Activation checkpointing re-runs every block in backward; the chunk's passes share one snapshot of the memory
    and one rotation of its keys, which a re-run must find as its first run did."""
    cfg, teacher, schedule = world
    kwargs = dict(memory_grad=memory_grad, read_weight=5.0)
    want = _rollout(scheduled_regression, cfg, teacher, schedule, **kwargs)
    checkpointed = random_model(cfg).train().enable_gradient_checkpointing(True)
    got = _rollout(scheduled_regression, cfg, teacher, schedule, model=checkpointed, **kwargs)
    assert got[0] == want[0] and got[2] == want[2]
    torch.testing.assert_close(got[3], want[3], rtol=0, atol=0)
    for name, grad in want[4].items():
        torch.testing.assert_close(got[4][name], grad, rtol=1e-6, atol=1e-9, msg=name)
