"""Chunk-by-chunk few-step generation through the Slow-Fast Memory.

Per chunk (docs/method.md section 3): fresh noise; few-step denoising with re-noising from x0 with fresh noise;
a clean pass at t = 0 writes the chunk's K/V into the memory; the memory consolidates and evicts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..budget import available_bytes, check_budget, rollout_need
from ..memory.config import MemoryConfig, memory_preset
from ..memory.slow_fast import SlowFastMemory
from ..memory.trace import ChunkStep, MemoryTrace
from ..models.wan import TextContext, WanModel
from .prompts import PromptSchedule
from .schedule import DEFAULT_SHIFT, DEFAULT_STEPS, add_noise, warp_timesteps, x0_from_flow
from .settings import LATENT_FRAMES, LATENT_SIDE, SEED, SHIFT, STEPS

FlowFn = Callable[[Tensor, Tensor], Tensor]
"""(x_t (B, C, f, H, W), t (B, f)) -> predicted flow (B, C, f, H, W)."""


def sample_chunk(
    predict_flow: FlowFn,
    noise: Tensor,
    timesteps: Sequence[float],
    *,
    generator: torch.Generator | None = None,
    renoise: Tensor | None = None,
    exit_step: int | None = None,
    grad: bool = False,
    first_x0: Tensor | None = None,
) -> Tensor:
    """Few-step flow sampling of one chunk (Self-Forcing style): x0 = x_t - sigma v, then x_next = (1 - s') x0 + s' eps'.

    Args:
        predict_flow: the model on this chunk (its memory already set up).
        noise: (B, C, f, H, W) float32 starting noise.
        timesteps: decreasing t in (0, 1000], e.g. :func:`warp_timesteps` output.
        generator: CPU generator for the fresh re-noising draws, drawn step by step and moved to the device.
        renoise: (n, B, C, f, H, W) the re-noising draws already on the device, one per step after the first (at
            least as many as the steps run); replaces ``generator`` (:func:`draw_chunk_noise`).
        exit_step: stop after this step and return its x0 (training rollouts); None runs every step.
        grad: record autograd for the exit step only; earlier steps never carry gradient.
        first_x0: the first step's x0, already computed (the model on ``noise`` at ``timesteps[0]``, e.g. by a
            training pass on the same input): used as it is, with whatever gradient it carries, instead of a pass.

    Returns:
        (B, C, f, H, W) float32 x0 of the exit (by default the last) step.

    """
    last = len(timesteps) - 1 if exit_step is None else exit_step
    if not 0 <= last < len(timesteps):
        raise ValueError(f"exit_step must lie in [0, {len(timesteps) - 1}], got {exit_step}")
    if (generator is None) == (renoise is None):
        raise ValueError("give the re-noising draws either as a generator or as renoise, not both or neither")
    if renoise is not None and len(renoise) < last:
        raise ValueError(f"{last + 1} steps need {last} re-noising draws, got {len(renoise)}")
    b, f = noise.shape[0], noise.shape[2]
    x = noise
    for i, t in enumerate(timesteps[: last + 1]):
        sigma = t / 1000.0
        if i == 0 and first_x0 is not None:
            x0 = first_x0
        else:
            with torch.set_grad_enabled(grad and i == last):
                flow = predict_flow(x, torch.full((b, f), float(t), device=x.device)).float()
                x0 = x0_from_flow(x, flow, sigma)
        if i < last:
            fresh = renoise[i] if renoise is not None else torch.randn(x.shape, generator=generator).to(x.device)
            x = add_noise(x0, fresh, timesteps[i + 1] / 1000.0)
    return x0


def draw_chunk_noise(shape: Sequence[int], draws: int, generator: torch.Generator, device: torch.device) -> Tensor:
    """A chunk's starting noise and re-noising draws, (draws, *shape) float32 on ``device``, in one transfer.

    The draws come from the CPU generator one after another, exactly as :func:`sample_chunk` would draw them step by
    step, so the same seed gives the same noise on every device (and the same values as drawing per step); they
    reach the device in one copy per chunk (from pinned memory, not waited for, on CUDA) instead of one per step.
    """
    host = torch.stack([torch.randn(tuple(shape), generator=generator) for _ in range(draws)])
    if device.type == "cuda":
        return host.pin_memory().to(device, non_blocking=True)
    return host.to(device)


def generate_chunk(
    model: WanModel,
    memory: SlowFastMemory,
    text: TextContext,
    frames: range,
    timesteps: Sequence[float],
    *,
    latent_size: tuple[int, int],
    generator: torch.Generator,
    exit_step: int | None = None,
    grad: bool = False,
) -> tuple[Tensor, ChunkStep]:
    """One autoregressive step: fresh noise, few-step denoising against the memory, clean t = 0 commit pass.

    The commit pass always runs without gradient on the detached output, so cached K/V never carry history.

    Returns:
        x0 (B, C, f, H, W) float32 (with autograd history when ``grad``) and the memory's decisions for the chunk.

    """
    shape = (text.batch_size, model.config.in_channels, len(frames), *latent_size)
    memory.begin_chunk(frames)
    last = len(timesteps) - 1 if exit_step is None else exit_step
    draws = draw_chunk_noise(shape, 1 + max(0, min(last, len(timesteps) - 1)), generator, model.device)

    def flow(x: Tensor, t: Tensor) -> Tensor:
        return model(x, t, text, attention=memory.attention())

    x0 = sample_chunk(flow, draws[0], timesteps, renoise=draws[1:], exit_step=exit_step, grad=grad)
    with torch.no_grad():
        zeros = torch.zeros(shape[0], shape[2], device=x0.device)
        model(x0.detach(), zeros, text, attention=memory.attention(commit=True), kv_only=True)
    return x0, memory.end_chunk()


@dataclass(kw_only=True, slots=True)
class ChunkOutput:
    """One finished chunk."""

    index: int
    """Chunk index."""
    frames: range
    """Latent frames it covers."""
    latents: Tensor
    """(B, C, f, H, W) float32 normalised latents."""
    prompt: int
    """Index of the prompt in force."""
    step: ChunkStep
    """The memory's decisions for this chunk."""


@dataclass(kw_only=True, slots=True)
class Generation:
    """A finished rollout."""

    latents: Tensor
    """(B, C, F, H, W) float32 normalised latents."""
    trace: MemoryTrace
    """Every memory decision, per chunk and layer."""


@torch.no_grad()  # as a decorator, grad mode is restored around each yield (a `with` block would leak it)
def stream(
    model: WanModel,
    text: Tensor | PromptSchedule,
    *,
    num_latent_frames: int,
    memory: MemoryConfig | str = "context_forcing",
    seed: int = 0,
    steps: Sequence[float] = DEFAULT_STEPS,
    shift: float = DEFAULT_SHIFT,
    latent_size: tuple[int, int] = (60, 104),
    progress: Callable[[int, int], None] | None = None,
    interrupt: Callable[[], None] | None = None,
    budget_bytes: float | None = None,
    keep_latents: bool = False,
    compile_attention: bool = False,
) -> Iterator[ChunkOutput]:
    """Generate chunk by chunk, yielding each chunk as soon as it is committed.

    Args:
        model: the causal student.
        text: (B, L, text_dim) text-encoder states, or a :class:`PromptSchedule` that switches prompts at chunk
            boundaries (the fast window is re-encoded under the new prompt, as LongLive does).
        num_latent_frames: frames to generate, a multiple of the memory's chunk size (240 ~ 60 s of Wan video).
        memory: a :class:`MemoryConfig` or a preset name.
        seed: same seed, same output.
        steps: denoising step list before warping.
        shift: flow shift for warping the step list.
        latent_size: latent (H, W); 60 x 104 for 480 x 832 video.
        progress: called with (chunks done, chunks total) after every chunk.
        interrupt: called before every chunk; raise from it to stop (e.g. ComfyUI's interruption check).
        budget_bytes: bytes the rollout may use on the model's device; None is what the device has available now
            (free VRAM, or available RAM on CPU); ``math.inf`` skips the check.
        keep_latents: count the whole video's latents in the budget (the caller keeps every chunk, as
            :func:`generate` does).
        compile_attention: run the memory's per-pass attention core under ``torch.compile`` (the first chunks
            pay the compilation; outputs agree with eager within float tolerance).

    Raises:
        ValueError: a setting outside its range (:mod:`.settings`), NaN or infinite.
        MemoryBudgetError: the rollout needs more memory than ``budget_bytes`` (checked before any allocation).

    """
    cfg = memory_preset(memory) if isinstance(memory, str) else memory
    schedule = text if isinstance(text, PromptSchedule) else PromptSchedule(texts=[text])
    LATENT_FRAMES.check("num_latent_frames", num_latent_frames)
    if num_latent_frames % cfg.chunk_frames:
        raise ValueError(
            f"num_latent_frames must be a positive multiple of the chunk size {cfg.chunk_frames}, got {num_latent_frames}"
        )
    SEED.check("seed", seed)
    SHIFT.check("shift", shift)
    STEPS.check("number of steps", len(steps))
    for side in latent_size:
        LATENT_SIDE.check("latent_size", side)
    timesteps = warp_timesteps(steps, shift)
    batch = schedule.texts[0].shape[0] if schedule.texts[0].ndim == 3 else 1
    need = rollout_need(model.config, cfg, tuple(latent_size), num_latent_frames, model.dtype, batch=batch,
                        keep_latents=keep_latents)
    check_budget(need, available_bytes(model.device) if budget_bytes is None else budget_bytes,
                 where=f"the model's device ({model.device})")
    mem = SlowFastMemory(cfg, model.config, compile_attention=compile_attention)
    generator = torch.Generator().manual_seed(seed)
    num_chunks = num_latent_frames // cfg.chunk_frames
    recent: dict[int, Tensor] = {}  # frame -> (B, C, H, W) clean latent of frames in the fast window
    prompt, text_ctx = -1, None
    for c in range(num_chunks):
        if interrupt is not None:
            interrupt()
        frames = range(c * cfg.chunk_frames, (c + 1) * cfg.chunk_frames)
        wanted = schedule.prompt_at(frames.start)
        if wanted != prompt:
            prompt, text_ctx = wanted, model.encode_text(schedule.texts[wanted])
            if c > 0:
                recache_fast_window(model, mem, text_ctx, recent)
        x0, step = generate_chunk(model, mem, text_ctx, frames, timesteps, latent_size=latent_size, generator=generator)
        recent.update({f: x0[:, :, i] for i, f in enumerate(frames)})
        keep = set(mem.fast_frames())
        recent = {f: x for f, x in recent.items() if f in keep}
        if progress is not None:
            progress(c + 1, num_chunks)
        yield ChunkOutput(index=c, frames=frames, latents=x0, prompt=prompt, step=step)


def recache_fast_window(model: WanModel, mem: SlowFastMemory, text_ctx: TextContext, recent: dict[int, Tensor]) -> None:
    """Re-encode the fast window's clean latents at t = 0 under a new prompt, one original chunk at a time."""
    frames = mem.drop_fast()
    chunk = mem.config.chunk_frames
    groups: dict[int, list[int]] = {}
    for f in frames:
        groups.setdefault(f // chunk, []).append(f)
    for group in groups.values():
        x = torch.stack([recent[f] for f in group], dim=2)  # (B, C, g, H, W)
        mem.begin_chunk(group, recache=True)
        model(x, torch.zeros(x.shape[0], x.shape[2], device=x.device), text_ctx, attention=mem.attention(commit=True),
              kv_only=True)
        mem.end_chunk()


def generate(model: WanModel, text: Tensor | PromptSchedule, **kwargs) -> Generation:
    """Generate a whole video; the keyword arguments are those of :func:`stream` (``budget_bytes`` included: the
    budget then counts the whole video's latents).

    Returns:
        The latents (B, C, F, H, W) and the memory trace.

    """
    chunks = []
    trace = MemoryTrace()
    for out in stream(model, text, keep_latents=True, **kwargs):
        chunks.append(out.latents)
        trace.chunks.append(out.step)
    return Generation(latents=torch.cat(chunks, dim=2), trace=trace)
