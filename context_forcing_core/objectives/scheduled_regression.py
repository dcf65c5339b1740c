"""On-policy contextual ODE regression onto an exact teacher, through the student's memory and a prompt schedule.

The measured fallback of the scene world's Stage 2 (toy world v2): the student rolls out a prompt schedule chunk
by chunk through its Slow-Fast Memory exactly as at inference (re-caching the fast window at every switch, as
:func:`~context_forcing_core.diffusion.sampler.stream` does). For every chunk the teacher sees the frames the
memory holds (the student's own context) and the chunk's prompt, and solves its probability-flow ODE from the
chunk's starting noise z to an end point x0*; the student, attending its memory, regresses x0* from z (the first
step, where the scene is decided: recall) and from x0* re-noised at every other of its step levels (where a chosen
picture is made exact; one rollout, the expensive part, then feeds all levels). Then the chunk is
committed: the student's own few-step sample (on-policy), or x0* (``teacher_forced``).

By default cached K/V are detached, so each chunk's loss is backpropagated at once and no graph outlives its chunk;
then only the *reading* of memory is trained: the t = 0 pass that *writes* a frame's K/V (commit, re-cache) never
gets a gradient. With ``memory_grad`` the memory keeps autograd history (out-of-place writes) and the commit and
re-cache passes run with gradient, so a chunk's loss also trains what earlier chunks stored (backpropagation
through the memory's write path, never through the committed latents themselves); one backward per rollout.

With ``teacher_window`` the teacher is the exact *short* teacher of Stage 1 instead: it sees the last
``teacher_window - chunk`` committed frames (the paper's 21-frame window with the chunk at its end), whatever the
memory holds, so the student learns to continue a visit but not to recall a scene that left the window.

Regression alone leaves the student's own few-step samples blurred: every level's optimum is a posterior mean, and a
small student's imperfect mean at high noise blends pictures that later steps do not separate. The **reading** term
(``read``, ``read_weight``) adds the mode-seeking half of DMD with the exact real score: the student's own sample of
the chunk (gradient through its last step) regresses onto what the teacher reads in it given the same context
(:func:`~context_forcing_core.toyworld.exact_teacher.reading`: the library picture it is nearest to, or the one the
context holds). With the sample it also commits that sample (on-policy), so no second sampling is needed. The
reader is told which chunks must invent (no frame of the context was shown under their prompt), so it can read
those jointly (:func:`~context_forcing_core.toyworld.exact_teacher.balanced_reading`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..diffusion.prompts import PromptSchedule
from ..diffusion.sampler import recache_fast_window, sample_chunk
from ..diffusion.schedule import DEFAULT_SHIFT, DEFAULT_STEPS, add_noise, warp_timesteps, x0_from_flow
from ..memory.config import MemoryConfig
from ..memory.slow_fast import SlowFastMemory
from ..models.wan import WanModel

ReadFn = Callable[[Tensor, Tensor, Tensor | None, Tensor], Tensor]
"""(the student's chunk (B, C, f, H, W), text (B, L, D), context or None, invent (B,) bool: the context shows nothing
of the chunk's prompt) -> what the teacher reads in it, same shape."""
TeacherFn = Callable[[Tensor, Tensor, Tensor | None, Tensor], Tensor]
"""(z (B, C, f, H, W), text (B, L, D), context (B, C, Fc, H, W) or None, frames) -> ODE end point x0* (B, C, f, H, W)."""


def inventing(schedule: PromptSchedule, prompt: int, held: Sequence[int]) -> Tensor:
    """(B,) bool: no frame in ``held`` was shown under the same prompt text as ``prompt`` (an index into
    ``schedule.texts``; a scene that returns has a new index with the same text).
    """
    texts = schedule.texts
    shown = {schedule.prompt_at(f) for f in held}
    same = [(texts[i] == texts[prompt]).flatten(1).all(1) for i in shown]  # each (B,)
    return ~torch.stack(same).any(0) if same else torch.ones(texts[prompt].shape[0], dtype=torch.bool)


def memory_frames(mem: SlowFastMemory) -> list[int]:
    """Every frame some layer of the memory holds, in time order (the student's attended context)."""
    return sorted({f for cache in mem.layers for f in cache.frames()})


def scheduled_regression(
    student: WanModel,
    teacher: TeacherFn,
    schedule: PromptSchedule,
    *,
    num_latent_frames: int,
    memory: MemoryConfig,
    generator: torch.Generator,
    teacher_forced: bool = False,
    loss_scale: float = 1.0,
    steps: Sequence[float] = DEFAULT_STEPS,
    shift: float = DEFAULT_SHIFT,
    latent_size: tuple[int, int] = (8, 8),
    memory_grad: bool = False,
    level_losses: list[list[float]] | None = None,
    teacher_window: int | None = None,
    read: ReadFn | None = None,
    read_weight: float = 0.0,
    read_losses: list[float] | None = None,
    read_onto: str = "reading",
) -> tuple[list[float], Tensor]:
    """One rollout of regression; gradients accumulate in ``student`` (``loss_scale`` x the mean chunk loss).
    ``level_losses``, when given, receives every chunk's mean squared error per step level (first: from z).
    ``teacher_window``: None, the teacher sees the memory's frames (Stage 2); else the last ``teacher_window -
    chunk`` frames (the short teacher of Stage 1). ``read`` with ``read_weight`` > 0 adds the reading term (module
    docstring) to every chunk's loss; ``read_losses`` receives its mean squared error per chunk. ``read_onto``
    "endpoint" regresses the student's own sample onto the teacher's ODE end point from the same noise instead (the
    chunk's x0*; ``read`` is then not needed): as varied as the teacher's samples, where the reading follows
    whatever picture the student already leans to.

    Returns:
        The regression loss of every chunk (mean squared error over its step levels; the reading term apart, in
        ``read_losses``), and the (B, C, F, H, W) committed latents.

    """
    chunk = memory.chunk_frames
    if num_latent_frames <= 0 or num_latent_frames % chunk:
        raise ValueError(f"num_latent_frames must be a positive multiple of the chunk size {chunk}")
    if read_onto not in ("reading", "endpoint"):
        raise ValueError(f"read_onto must be 'reading' or 'endpoint', got {read_onto!r}")
    reads = read_weight > 0 and (read is not None or read_onto == "endpoint")
    if teacher_window is not None and teacher_window < chunk:
        raise ValueError(f"teacher_window must hold at least one chunk ({chunk} frames), got {teacher_window}")
    seen = 0 if teacher_window is None else teacher_window - chunk  # frames before the chunk the short teacher sees
    timesteps = warp_timesteps(steps, shift)
    num_chunks = num_latent_frames // chunk
    mem = SlowFastMemory(memory, student.config, keep_grad=memory_grad)
    write_grad = torch.enable_grad if memory_grad else torch.no_grad
    total: Tensor | float = 0.0
    text0 = schedule.texts[0]
    b, dev = text0.shape[0], student.device
    shape = (b, student.config.in_channels, chunk, *latent_size)
    committed: dict[int, Tensor] = {}  # frame -> (B, C, H, W) clean latent
    losses: list[float] = []
    chunks: list[Tensor] = []
    prompt = -1
    for c in range(num_chunks):
        frames = range(c * chunk, (c + 1) * chunk)
        wanted = schedule.prompt_at(frames.start)
        text = schedule.texts[wanted].to(dev)
        if wanted != prompt:
            if c > 0:
                with write_grad():
                    recent = {f: committed[f] for f in mem.fast_frames()}
                    recache_fast_window(student, mem, student.encode_text(text), recent)
            prompt = wanted
        held = memory_frames(mem) if teacher_window is None else list(range(max(0, frames.start - seen), frames.start))
        context = torch.stack([committed[f] for f in held], dim=2) if held else None  # (B, C, Fc, H, W)
        z = torch.randn(shape, generator=generator).to(dev)
        target = teacher(z, text, context, frames).detach()  # (B, C, chunk, H, W)
        mem.begin_chunk(frames)
        inputs = [(z, timesteps[0])]
        for t in timesteps[1:]:  # x0* re-noised at each later level, fresh noise each
            inputs.append((add_noise(target, torch.randn(shape, generator=generator).to(dev), t / 1000.0), t))
        ctx = student.encode_text(text)  # with grad: the text layers learn too
        loss, per_level = 0.0, []
        for x_t, t in inputs:
            tt = torch.full((b, chunk), float(t), device=dev)
            flow = student(x_t, tt, ctx, attention=mem.attention()).float()
            mse = F.mse_loss(x0_from_flow(x_t, flow, t / 1000.0), target)
            per_level.append(float(mse.detach()))
            loss = loss + mse / len(inputs)
        if level_losses is not None:
            level_losses.append(per_level)
        losses.append(float(loss.detach()))
        own = None

        def chunk_flow(x: Tensor, t: Tensor, c=ctx) -> Tensor:  # the student on this chunk, attending its memory
            return student(x, t, c, attention=mem.attention())

        if reads:  # the student's own sample onto the teacher's reading of it (or its end point)
            own = sample_chunk(chunk_flow, z, timesteps, generator=generator, grad=True)  # grad: last step only
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
        with torch.no_grad():  # the same text context: the weights have not stepped yet
            if teacher_forced:
                x0 = target
            elif own is not None:
                x0 = own.detach()
            else:
                x0 = sample_chunk(chunk_flow, z, timesteps, generator=generator)
        with write_grad():  # the commit pass writes this chunk's K/V
            student(x0, torch.zeros(b, chunk, device=dev), ctx, attention=mem.attention(commit=True))
        mem.end_chunk()
        chunks.append(x0.detach())
        committed.update({f: x0[:, :, i].detach() for i, f in enumerate(frames)})
        keep = set(memory_frames(mem)) | set(range(frames.stop - seen, frames.stop))
        committed = {f: x for f, x in committed.items() if f in keep}
    if memory_grad:
        total.backward()
    return losses, torch.cat(chunks, dim=2)
