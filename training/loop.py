"""The distillation loop: Stage 1 (DMD, Self-Forcing style) and Stage 2 (contextual DMD) on the toy world.

One ``train_step`` = a critic update every step and a student update every ``gen_update_every`` steps, each over
``grad_accum`` micro-batches. The student rolls out through its memory exactly as at inference
(``self_rollout``); teacher and critic score the last ``target_frames`` given the same student-generated context.

Data parallel: an update's global batch is ``world_size * grad_accum`` micro-batches; rank r runs the global indices
g in ``DistContext.micro_batches`` (its ``grad_accum`` consecutive slots), reads prompts or clips
``cursor + g * batch_size + j``, and draws all its noise, timesteps and exit steps from
``micro_generator(seed, step, g, purpose)``. Gradients are averaged over ranks before clipping, so a run's updates
depend on the global batch only, not on how it is split over processes (up to float summation order).
"""

from __future__ import annotations

import contextlib
import copy
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from context_forcing_core.diffusion.schedule import DEFAULT_STEPS, add_noise
from context_forcing_core.memory.config import MemoryConfig, memory_preset
from context_forcing_core.models.config import model_preset
from context_forcing_core.models.loading import load_model
from context_forcing_core.models.wan import WanModel
from context_forcing_core.objectives.curriculum import RolloutCurriculum, exit_step, sample_rollout
from context_forcing_core.objectives.dmd import contextual_dmd_loss, contextual_scores, critic_loss, flow_with_context
from context_forcing_core.objectives.flow import dmd_timesteps, flow_matching_loss, sample_timesteps
from context_forcing_core.objectives.rollout import self_rollout
from context_forcing_core.toyworld.dataset import ToyClip, ToyClipDataset, ToyPromptDataset
from context_forcing_core.toyworld.text import ToyTextEncoder

from .config import OptimConfig, TrainConfig
from .distributed import DistContext, all_reduce_gradients, average_metrics, barrier, broadcast_parameters
from .rng import micro_generator, step_generator
from .state import TrainState, ema_update, latest_checkpoint, load_checkpoint, new_ema, save_checkpoint


@dataclass(kw_only=True, slots=True)
class Run:
    """Everything one distillation run holds besides its :class:`TrainState`."""

    cfg: TrainConfig
    state: TrainState
    teacher: WanModel | None
    """Frozen real score (None in the teacher stage, which trains it)."""
    prompts: ToyPromptDataset
    """Prompt-only data (the DMD stages are data-free)."""
    clips: ToyClipDataset | None
    """Video clips of the teacher stage; None in the data-free stages."""
    uncond: Tensor
    """(1, L, D) text states of the empty prompt (the guidance's unconditional branch)."""
    memory: MemoryConfig
    curriculum: RolloutCurriculum | None
    """Stage 2 rollout lengths; None in Stage 1."""
    dist: DistContext = field(default_factory=DistContext)
    """This process's place in a data-parallel run (one process by default)."""


def _adamw(params, cfg: OptimConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)


def build_run(cfg: TrainConfig, *, teacher: str | None = None, student_init: str | None = None,
              dist: DistContext | None = None) -> Run:
    """Models, optimisers and data for ``cfg``; the critic starts as a copy of the student, as in Self-Forcing.

    On several ranks (``dist``), rank 0's student and teacher weights are broadcast so every replica starts equal.
    """
    dist = dist or DistContext()
    if model_preset(cfg.model).text_len != 16 or cfg.device != "cpu":
        raise ValueError("the training loop currently runs the toy presets on CPU; use --dry-run for the Wan presets")
    torch.manual_seed(cfg.seed)
    dtype = getattr(torch, cfg.dtype)
    student = (load_model(student_init) if student_init else WanModel(model_preset(cfg.model))).to(dtype).train()
    broadcast_parameters(student, dist)
    distil = cfg.stage != "teacher"
    critic = copy.deepcopy(student) if distil else None
    real = None
    if distil:
        real = (load_model(teacher) if teacher else WanModel(model_preset(cfg.teacher))).to(dtype)
        real.eval().requires_grad_(False)
        broadcast_parameters(real, dist)
    encoder = ToyTextEncoder(width=student.config.text_dim, max_tokens=student.config.text_len)
    prompts = ToyPromptDataset(1024, seed=cfg.seed, encoder=encoder)
    clips = None if distil else ToyClipDataset(1_000_000, num_latent_frames=cfg.rollout_frames, seed=cfg.seed,
                                               encoder=encoder)
    state = TrainState(student=student, critic=critic, ema=new_ema(student),
                       student_optim=_adamw(student.parameters(), cfg.generator_optim),
                       critic_optim=_adamw(critic.parameters(), cfg.critic_optim) if distil else None)
    curriculum = None
    if cfg.stage == "stage2":
        curriculum = RolloutCurriculum(k_min=cfg.target_frames, n_start=cfg.curriculum_start, n_end=cfg.curriculum_end,
                                       ramp_steps=cfg.curriculum_ramp_steps, target_frames=cfg.target_frames)
    return Run(cfg=cfg, state=state, teacher=real, prompts=prompts, clips=clips, uncond=encoder.encode([""]),
               memory=memory_preset(cfg.memory), curriculum=curriculum, dist=dist)


def _micro_batches(run: Run, purpose: str) -> Iterator[tuple[int, torch.Generator]]:
    """Global micro-batch indices g of this rank, each with the generator of all its draws."""
    for g in run.dist.micro_batches(run.cfg.grad_accum):
        yield g, micro_generator(run.cfg.seed, run.state.step, g, purpose)


def _items(run: Run, data: Sequence, g: int) -> list:
    """The ``batch_size`` items of global micro-batch g: ``cursor + g * batch_size + j``, wrapping around."""
    start = run.state.data_cursor + g * run.cfg.batch_size
    return [data[(start + j) % len(data)] for j in range(run.cfg.batch_size)]


def _advance_cursor(run: Run) -> None:
    """Past the global batch of one update, identically on every rank."""
    run.state.data_cursor += run.dist.world_size * run.cfg.grad_accum * run.cfg.batch_size


def _rollout(run: Run, frames: int, text: Tensor, gen: torch.Generator, requires_grad: bool) -> Tensor:
    """(B, C, frames, H, W) student self-rollout; exit step and noise come from the micro-batch's generator."""
    st, cfg = run.state, run.cfg
    return self_rollout(st.student, text, num_latent_frames=frames, target_frames=cfg.target_frames,
                        exit_step=exit_step(len(DEFAULT_STEPS), gen), generator=gen,
                        memory=run.memory, clean_context=cfg.stage == "stage2", requires_grad=requires_grad,
                        latent_size=cfg.latent_size).latents


def _noised_target(run: Run, x: Tensor, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Context (detached), noise, t (B,) and x_t of the target frames of a rollout x (B, C, F, H, W)."""
    n = run.cfg.target_frames
    target = x[:, :, -n:].detach()
    t = dmd_timesteps(x.shape[0], gen)  # CF / SF: shift 5, clamped to [20, 980]
    noise = torch.randn(target.shape, generator=gen)
    return x[:, :, :-n].detach(), noise, t, add_noise(target, noise, t / 1000)


def _clip_and_step(run: Run, model: WanModel, optim: torch.optim.Optimizer, clip: float) -> float:
    """Average gradients over ranks (the global batch's mean), clip, step; returns the pre-clip norm."""
    all_reduce_gradients(model, run.dist)
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), clip if clip > 0 else float("inf"))
    optim.step()
    optim.zero_grad(set_to_none=True)
    return float(norm)


def generator_update(run: Run, frames: int) -> dict[str, float]:
    """One student step of (contextual) DMD, CF Eq. 4-6, accumulated over micro-batches."""
    st, cfg = run.state, run.cfg
    st.critic.requires_grad_(False)
    loss = 0.0
    for g, gen in _micro_batches(run, "generator"):
        text = torch.stack([item[1] for item in _items(run, run.prompts, g)])  # (B, L, D)
        x = _rollout(run, frames, text, gen, requires_grad=True)
        context, _, t, x_t = _noised_target(run, x, gen)
        x0_real, x0_fake = contextual_scores(run.teacher, st.critic, context, x_t, t, text,
                                             run.uncond.expand(text.shape[0], -1, -1), guidance_scale=cfg.guidance)
        dmd = contextual_dmd_loss(x, x0_real, x0_fake, target_frames=cfg.target_frames)
        (dmd.loss / cfg.grad_accum).backward()
        loss += dmd.loss.item() / cfg.grad_accum
    _advance_cursor(run)
    st.critic.requires_grad_(True)
    norm = _clip_and_step(run, st.student, st.student_optim, cfg.generator_optim.grad_clip)
    ema_update(st.ema, st.student, cfg.ema_decay if st.step >= cfg.ema_start else 0.0)  # copy until ema_start
    return average_metrics({"dmd_loss": loss}, run.dist) | {"student_grad_norm": norm}


def critic_update(run: Run, frames: int) -> dict[str, float]:
    """One critic (fake score) step: flow matching on detached student samples, given the same context."""
    st, cfg = run.state, run.cfg
    loss = 0.0
    for g, gen in _micro_batches(run, "critic"):
        text = torch.stack([item[1] for item in _items(run, run.prompts, g)])  # (B, L, D)
        with torch.no_grad():
            x = _rollout(run, frames, text, gen, requires_grad=False)
        context, noise, t, x_t = _noised_target(run, x, gen)
        flow, _ = flow_with_context(st.critic, context, x_t, t, text)
        step_loss = critic_loss(flow, x[:, :, -cfg.target_frames:], noise, t)
        (step_loss / cfg.grad_accum).backward()
        loss += step_loss.item() / cfg.grad_accum
    _advance_cursor(run)
    norm = _clip_and_step(run, st.critic, st.critic_optim, cfg.critic_optim.grad_clip)
    return average_metrics({"critic_loss": loss}, run.dist) | {"critic_grad_norm": norm}


def teacher_update(run: Run) -> dict[str, float]:
    """One flow-matching step of the bidirectional teacher on toy clips (one timestep per clip, shift 5)."""
    st, cfg = run.state, run.cfg
    loss = 0.0
    for g, gen in _micro_batches(run, "teacher"):
        batch = ToyClip.collate(_items(run, run.clips, g))
        x0, text = batch["latents"], batch["text"]  # (B, C, F, H, W), (B, L, D)
        t = sample_timesteps(x0.shape[0], generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        flow = st.student(add_noise(x0, noise, t / 1000), t, text)
        step_loss = flow_matching_loss(flow, x0, noise, t)
        (step_loss / cfg.grad_accum).backward()
        loss += step_loss.item() / cfg.grad_accum
    _advance_cursor(run)
    norm = _clip_and_step(run, st.student, st.student_optim, cfg.generator_optim.grad_clip)
    ema_update(st.ema, st.student, cfg.ema_decay if st.step >= cfg.ema_start else 0.0)
    return average_metrics({"flow_loss": loss}, run.dist) | {"grad_norm": norm}


def train_step(run: Run) -> dict[str, float]:
    """A critic update every step, a student update every ``gen_update_every`` steps (SF's update ratio); in the
    teacher stage, one flow-matching step.
    """
    st, cfg = run.state, run.cfg
    if cfg.stage == "teacher":
        metrics = {"step": st.step} | teacher_update(run)
        st.step += 1
        return metrics
    if run.curriculum is None:
        frames = cfg.rollout_frames
    else:  # a step-level draw: every rank rolls out the same length without communicating
        frames = sample_rollout(st.step, run.curriculum, step_generator(cfg.seed, st.step))
    metrics: dict[str, float] = {"step": st.step, "rollout_frames": frames}
    if st.step % cfg.gen_update_every == 0:
        metrics |= generator_update(run, frames)
    metrics |= critic_update(run, frames)
    st.step += 1
    return metrics


def train(run: Run, out: Path, *, resume: bool = False) -> None:
    """Run to ``cfg.steps``, logging JSONL metrics and writing checkpoints; ``resume`` continues from ``latest``.

    Every rank trains and resumes from the same checkpoint; rank 0 alone logs, prints and saves (the others wait
    at a barrier after each save). Logged losses are means over ranks.
    """
    ctx = run.dist
    if resume and (folder := latest_checkpoint(out)) is not None:
        load_checkpoint(run.state, folder)
        if ctx.is_main:
            print(f"resumed from {folder} at step {run.state.step}")
    cfg, st = run.cfg, run.state
    with (out / "metrics.jsonl").open("a") if ctx.is_main else contextlib.nullcontext() as log:
        while st.step < cfg.steps:
            start = time.perf_counter()
            metrics = train_step(run)
            metrics["seconds"] = time.perf_counter() - start
            last = st.step == cfg.steps
            if log is not None:
                log.write(json.dumps(metrics) + "\n")
                if st.step % cfg.log_every == 0 or last:
                    log.flush()
                    shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "step")
                    print(f"step {st.step}/{cfg.steps}: {shown}", flush=True)
            if st.step % cfg.save_every == 0 or last:
                if ctx.is_main:
                    save_checkpoint(st, out)
                barrier(ctx)
