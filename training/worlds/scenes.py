"""The toy world's training pieces (``context_forcing_core.toyworld``: scenes that come back): its closed-form
teacher, and its on-policy regression through visit schedules (``objective regression``, settings in
``TrainConfig.scenes``). Importing the module registers both with ``training.updates``; its data (scene clips and
prompts) is ``training.datasets``'s; its sample videos are drawn by ``training.samples``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from context_forcing_core.models.config import model_preset
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
from ..updates import Run, micro_batches, register_samples, register_teacher, register_update, student_step


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
            if cfg.scenes.target_coupling == "quantile":
                return coupled_sample(run.teacher, text, noise=z, context=context)
            return exact_sample(run.teacher, text, num_frames=z.shape[2], context=context, steps=cfg.ode.steps,
                                noise=z, generator=gen)

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
