"""The toy world's training pieces (``context_forcing_core.toyworld``: scenes that come back): its closed-form
teacher, its first-visit regression (the ODE init, ``objective regression``) and its on-policy regression through
visit schedules (Stage 1 / 2, ``objective regression``, settings in ``TrainConfig.scenes``), and the writer of its
sample videos. Importing the module registers them with ``training.updates``; its data (scene clips and prompts) is
``training.datasets``'s; the sample videos are drawn by ``training.samples``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from context_forcing_core.diffusion.schedule import DEFAULT_SHIFT, DEFAULT_STEPS, add_noise, warp_timesteps, x0_from_flow
from context_forcing_core.models.config import model_preset
from context_forcing_core.models.wan import WanModel
from context_forcing_core.objectives.scheduled_regression import scheduled_regression
from context_forcing_core.toyworld.exact_teacher import (
    ExactTeacher,
    balanced_reading,
    coupled_sample,
    exact_sample,
    reading,
)
from context_forcing_core.toyworld.scene_rollout import prompt_schedule
from context_forcing_core.toyworld.scenes import random_schedule, relabel_schedule
from context_forcing_core.toyworld.text import ToyTextEncoder

from ..config import EXACT_TEACHER, TrainConfig
from ..distributed import average_metrics
from ..samples import toy_samples
from ..telemetry import MetricsLogger
from ..updates import (
    Run,
    micro_batches,
    prompt_batch,
    register_samples,
    register_teacher,
    register_update,
    student_step,
)


@register_teacher(EXACT_TEACHER)
def exact_teacher(cfg: TrainConfig, device: torch.device) -> ExactTeacher:
    """The closed-form teacher of the picture library, its prompts identified through the toy text encoder at the
    student's text width and length. It reads whatever context it is given: the student's memory in Stage 2, none
    in Stage 1 DMD (the target is the whole rollout), a 21-frame window in Stage 1 regression.
    """
    mcfg = model_preset(cfg.model)
    return ExactTeacher(encoder=ToyTextEncoder(width=mcfg.text_dim, max_tokens=mcfg.text_len)).to(device)


def teacher_forcing(run: Run) -> float:
    """Share of teacher-committed rollouts at this step: 1 ramping linearly to ``scenes.teacher_forcing_end`` over
    ``scenes.teacher_forcing_ramp_steps`` (not tied to ``steps``, so a resume with more steps keeps the schedule).
    """
    sc = run.cfg.scenes
    ramp = min(1.0, run.state.step / sc.teacher_forcing_ramp_steps) if sc.teacher_forcing_ramp_steps > 0 else 1.0
    return 1.0 + ramp * (sc.teacher_forcing_end - 1.0)


def teacher_target(run: Run, z: Tensor, text: Tensor, context: Tensor | None, gen: torch.Generator) -> Tensor:
    """The exact teacher's sample (B, C, f, H, W) of a chunk from its noise ``z``, given ``context``: its
    probability-flow end point (``scenes.target_coupling`` "ode") or the quantile-coupled picture ("quantile").
    """
    cfg = run.cfg
    if cfg.scenes.target_coupling == "quantile":
        return coupled_sample(run.teacher, text, noise=z, context=context)
    return exact_sample(run.teacher, text, num_frames=z.shape[2], context=context, steps=cfg.ode.steps, noise=z,
                        generator=gen)


@register_update("ode-init", "regression")
def first_visit_update(run: Run) -> dict[str, float]:
    """One student step of first-visit regression (the toy world's ODE init): per micro-batch ``batch_size`` prompts
    and one chunk of noise each, nothing in memory; the student's x0 at every step level regresses onto the exact
    teacher's sample of that noise (:func:`teacher_target`), from the noise at the first level and from the sample
    re-noised with fresh noise at the others, as Stage 2 regresses a chunk. The levels run as one batched pass.
    """
    st, cfg = run.state, run.cfg
    chunk, dev = run.memory.chunk_frames, st.student.device
    loss = 0.0
    for g, gen in micro_batches(run, "first-visit"):
        text = prompt_batch(run, g)  # (B, L, D)
        shape = (text.shape[0], st.student.config.in_channels, chunk, *cfg.rollout.latent_size)
        z = torch.randn(shape, generator=gen).to(dev)  # drawn on the CPU generator, as every draw of the loop
        with torch.no_grad():
            target = teacher_target(run, z, text, None, gen).float()  # (B, C, f, H, W)
        step_loss = first_visit_loss(st.student, text, z, target, gen)
        (step_loss / cfg.grad_accum).backward()
        loss += step_loss.item() / cfg.grad_accum
    norm = student_step(run)
    return average_metrics({"regression_loss": loss}, run.dist) | {"grad_norm": norm}


def first_visit_loss(model: WanModel, text: Tensor, z: Tensor, target: Tensor, gen: torch.Generator) -> Tensor:
    """Mean over the student's step levels of its x0 error onto ``target`` (B, C, f, H, W), from the noise ``z`` at
    the first level and from ``target`` re-noised with fresh noise from ``gen`` (drawn level by level) at the others;
    one batched pass over the levels, no memory (block-causal attention within the chunk).
    """
    levels = warp_timesteps(DEFAULT_STEPS, DEFAULT_SHIFT)
    n, (b, f) = len(levels), (z.shape[0], z.shape[2])
    renoised = [add_noise(target, torch.randn(z.shape, generator=gen).to(z), t / 1000) for t in levels[1:]]
    x = torch.cat([z, *renoised])  # (n B, C, f, H, W), level-major
    t = torch.tensor(levels, device=z.device).repeat_interleave(b)[:, None].expand(-1, f)  # (n B, f)
    flow = model(x, t, text.repeat(n, 1, 1), attention="block_causal").float()
    return F.mse_loss(x0_from_flow(x, flow, t / 1000), target.repeat(n, 1, 1, 1, 1))


@register_update("stage1", "regression")
@register_update("stage2", "regression")
def scheduled_update(run: Run) -> dict[str, float]:
    """One student step of on-policy contextual ODE regression onto the exact teacher: per micro-batch one seeded
    visit schedule of ``rollout.frames`` (``batch_size`` relabelled copies: same switches, other scenes and pictures;
    with the balanced reading, plain copies), rolled out through the memory with re-caching at every switch. Stage 2
    asks the exact long teacher (it sees the student's memory), Stage 1 the short one (the last
    ``rollout.target_frames``).
    """
    st, cfg = run.state, run.cfg
    loss, forced, read_loss = 0.0, 0.0, 0.0
    enc = run.teacher.encoder
    for _, gen in micro_batches(run, "scenes"):
        rng = np.random.default_rng(int(torch.randint(2**62, (1,), generator=gen)))
        base = random_schedule(rng, num_frames=cfg.rollout.frames, num_scenes=cfg.scenes.per_video,
                               visit_units=tuple(cfg.scenes.visit_units), min_return_gap=cfg.scenes.min_return_gap)
        balanced = cfg.scenes.read_onto == "balanced"
        schedules = [base] * cfg.batch_size if balanced else [base] + [
            relabel_schedule(base, rng) for _ in range(cfg.batch_size - 1)]
        tf = bool(rng.random() < teacher_forcing(run))

        def teacher_fn(z: Tensor, text: Tensor, context: Tensor | None, frames: range, gen=gen) -> Tensor:
            return teacher_target(run, z, text, context, gen)

        def read_fn(own: Tensor, text: Tensor, context: Tensor | None, invent: Tensor, balanced=balanced) -> Tensor:
            if balanced:
                return balanced_reading(run.teacher, own, text, context, invent)
            return reading(run.teacher, own, text, context)

        reads: list[float] = []
        losses, _ = scheduled_regression(st.student, teacher_fn, prompt_schedule(schedules, enc),
                                         num_latent_frames=cfg.rollout.frames, memory=run.memory, generator=gen,
                                         teacher_forced=tf, loss_scale=1.0 / cfg.grad_accum,
                                         latent_size=cfg.rollout.latent_size, memory_grad=cfg.scenes.memory_grad,
                                         teacher_window=cfg.rollout.target_frames if cfg.stage == "stage1" else None,
                                         read=read_fn, read_weight=cfg.scenes.read_weight, read_losses=reads,
                                         read_onto="endpoint" if cfg.scenes.read_onto == "endpoint" else "reading")
        loss += float(np.mean(losses)) / cfg.grad_accum
        read_loss += float(np.mean(reads)) / cfg.grad_accum if reads else 0.0
        forced += float(tf) / cfg.grad_accum
    norm = student_step(run)
    metrics = {"regression_loss": loss, "teacher_forced": forced}
    if cfg.scenes.read_weight:
        metrics["read_loss"] = read_loss
    return average_metrics(metrics, run.dist) | {"grad_norm": norm}


@register_samples
def write_samples(run: Run, out: Path, log: MetricsLogger) -> None:
    """Sample videos of the EMA student on fixed held-out schedules, with their recall, into ``out/samples``."""
    st, cfg = run.state, run.cfg
    samples = toy_samples(st.ema, videos=cfg.logging.sample_videos, seconds=cfg.logging.sample_seconds,
                          memory=run.memory, seed=cfg.seed, out_dir=out / "samples",
                          step=st.step)
    log.log({f"sample/{k}": v for k, v in samples.metrics.items()}, step=st.step)
    log.add_video("sample/video", samples.frames[0], st.step)
