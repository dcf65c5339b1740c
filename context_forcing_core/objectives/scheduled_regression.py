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
from ..models.wan import TextContext, WanModel

ReadFn = Callable[[Tensor, Tensor, Tensor | None, Tensor], Tensor]
"""(the student's chunk (B, C, f, H, W), text (B, L, D), context or None, invent (B,) bool: the context shows nothing
of the chunk's prompt) -> what the teacher reads in it, same shape."""
TeacherFn = Callable[[Tensor, Tensor, Tensor | None, Tensor], Tensor]
"""(z (B, C, f, H, W), text (B, L, D), context (B, C, Fc, H, W) or None, frames) -> ODE end point x0* (B, C, f, H, W)."""


def inventing(schedule: PromptSchedule, prompt: int, held: Sequence[int],
              same_text: dict[tuple[int, int], Tensor] | None = None) -> Tensor:
    """(B,) bool: no frame in ``held`` was shown under the same prompt text as ``prompt`` (an index into
    ``schedule.texts``; a scene that returns has a new index with the same text). ``same_text``, when given, keeps
    the (B,) comparison of every pair of prompts asked about, for the next call on the same schedule.
    """
    texts = schedule.texts

    def same_as_prompt(i: int) -> Tensor:  # (B,)
        key = (min(i, prompt), max(i, prompt))
        if same_text is not None and key in same_text:
            return same_text[key]
        equal = (texts[i] == texts[prompt]).flatten(1).all(1)
        if same_text is not None:
            same_text[key] = equal
        return equal

    same = [same_as_prompt(i) for i in sorted({schedule.prompt_at(f) for f in held})]
    return ~torch.stack(same).any(0) if same else torch.ones(texts[prompt].shape[0], dtype=torch.bool)


def memory_frames(mem: SlowFastMemory) -> list[int]:
    """Every frame some layer of the memory holds, in time order (the student's attended context)."""
    return sorted({f for cache in mem.layers for f in cache.frames()})


class _SharedText:
    """Every prompt of a rollout encoded in one batched pass with gradient, each chunk reading its prompt's slice.

    The chunks' losses reach the text layers through leaves (the encoded K/V, detached) whose gradients accumulate
    over the rollout's backward passes; :meth:`backward` then sends the sum through the text layers once. The same
    gradient as encoding the prompt anew for every chunk and re-cache (the weights do not step within a rollout),
    for one text pass and one text backward per rollout.
    """

    def __init__(self, student: WanModel, schedule: PromptSchedule, prompts: Sequence[int]) -> None:
        self.order = {p: i for i, p in enumerate(dict.fromkeys(prompts))}
        dev = student.device
        self.batch = schedule.texts[0].shape[0]
        encoded = student.encode_text(torch.cat([schedule.texts[p].to(dev) for p in self.order]))
        self.encoded = [*encoded.keys, *encoded.values]
        self.leaves = [t.detach().requires_grad_(t.requires_grad) for t in self.encoded]
        self.layers = len(encoded.keys)

    def context(self, prompt: int, repeat: int = 1) -> TextContext:
        """Prompt ``prompt``'s text context, its batch stacked ``repeat`` times."""
        i, b = self.order[prompt], self.batch
        rows = [t[i * b:(i + 1) * b] for t in self.leaves]
        if repeat > 1:
            rows = [t.repeat(repeat, *([1] * (t.ndim - 1))) for t in rows]
        return TextContext(keys=rows[: self.layers], values=rows[self.layers:])

    def backward(self) -> None:
        """The accumulated gradients of the text contexts through the text layers."""
        pairs = [(t, leaf.grad) for t, leaf in zip(self.encoded, self.leaves) if leaf.grad is not None]
        if pairs:
            torch.autograd.backward([t for t, _ in pairs], [g for _, g in pairs])


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

    How it is computed (the result is that of one pass per level and per sampling step, in float tolerance; see
    ``tests/core/objectives/test_scheduled_regression_batched.py``): a chunk's step levels run as one pass of the
    levels stacked along the batch, every level attending the same memory; the chunk's own sample starts from the
    first level's x0 (the same input, z at the first timestep); every prompt of the rollout is encoded once.

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
    levels = len(timesteps)
    num_chunks = num_latent_frames // chunk
    mem = SlowFastMemory(memory, student.config, keep_grad=memory_grad)
    write_grad = torch.enable_grad if memory_grad else torch.no_grad
    total: Tensor | float = 0.0
    text0 = schedule.texts[0]
    b, dev = text0.shape[0], student.device
    shape = (b, student.config.in_channels, chunk, *latent_size)
    shared = _SharedText(student, schedule, [schedule.prompt_at(c * chunk) for c in range(num_chunks)])
    level_t = torch.cat([torch.full((b, chunk), float(t), device=dev) for t in timesteps])  # (levels * B, chunk)
    level_sigma = torch.tensor([t / 1000.0 for t in timesteps], dtype=torch.float64).repeat_interleave(b).to(dev)
    committed: dict[int, Tensor] = {}  # frame -> (B, C, H, W) clean latent
    same_text: dict[tuple[int, int], Tensor] = {}  # the readers' prompt comparisons (inventing)
    losses: list[float] = []
    chunks: list[Tensor] = []
    prompt = -1
    for c in range(num_chunks):
        frames = range(c * chunk, (c + 1) * chunk)
        wanted = schedule.prompt_at(frames.start)
        text = schedule.texts[wanted].to(dev)
        ctx = shared.context(wanted)  # with grad: the text layers learn too
        if wanted != prompt:
            if c > 0:
                with write_grad():
                    recent = {f: committed[f] for f in mem.fast_frames()}
                    recache_fast_window(student, mem, ctx, recent)
            prompt = wanted
        held = memory_frames(mem) if teacher_window is None else list(range(max(0, frames.start - seen), frames.start))
        context = torch.stack([committed[f] for f in held], dim=2) if held else None  # (B, C, Fc, H, W)
        z = torch.randn(shape, generator=generator).to(dev)
        target = teacher(z, text, context, frames).detach()  # (B, C, chunk, H, W)
        mem.begin_chunk(frames)
        inputs = [z]
        for t in timesteps[1:]:  # x0* re-noised at each later level, fresh noise each
            inputs.append(add_noise(target, torch.randn(shape, generator=generator).to(dev), t / 1000.0))
        x_t = torch.cat(inputs)  # (levels * B, C, chunk, H, W): one pass for every level
        flow = student(x_t, level_t, shared.context(wanted, levels), attention=mem.attention(repeat=levels)).float()
        x0_levels = x0_from_flow(x_t, flow, level_sigma).unflatten(0, (levels, b))  # (levels, B, C, chunk, H, W)
        loss, per_level = 0.0, []
        for x0 in x0_levels:
            mse = F.mse_loss(x0, target)
            per_level.append(float(mse.detach()))
            loss = loss + mse / levels
        if level_losses is not None:
            level_losses.append(per_level)
        losses.append(float(loss.detach()))
        first = x0_levels[0] if levels == 1 else x0_levels[0].detach()  # the sample's first step: z at timesteps[0]
        own = None

        def chunk_flow(x: Tensor, t: Tensor, c=ctx) -> Tensor:  # the student on this chunk, attending its memory
            return student(x, t, c, attention=mem.attention())

        if reads:  # the student's own sample onto the teacher's reading of it (or its end point)
            own = sample_chunk(chunk_flow, z, timesteps, generator=generator, grad=True, first_x0=first)
            goal = target if read_onto == "endpoint" else read(own.detach(), text, context,
                                                                inventing(schedule, wanted, held, same_text))
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
                x0 = sample_chunk(chunk_flow, z, timesteps, generator=generator, first_x0=first.detach())
        with write_grad():  # the commit pass writes this chunk's K/V
            student(x0, torch.zeros(b, chunk, device=dev), ctx, attention=mem.attention(commit=True), kv_only=True)
        mem.end_chunk()
        chunks.append(x0.detach())
        committed.update({f: x0[:, :, i].detach() for i, f in enumerate(frames)})
        keep = set(memory_frames(mem)) | set(range(frames.stop - seen, frames.stop))
        committed = {f: x for f, x in committed.items() if f in keep}
    if memory_grad:
        total.backward()
    shared.backward()
    return losses, torch.cat(chunks, dim=2)
