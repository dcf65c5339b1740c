"""The training loop of every stage: build a run, step it, log, sample, checkpoint, resume.

``build_run`` makes the networks, optimisers and data of a config (a world's closed-form teacher comes from
``training.updates``' registry); ``train_step`` runs the update registered for the config's (stage, objective)
(``training.updates``: DMD, the teachers' flow matching, ERFT, ODE init; ``training.worlds``: what a toy world adds)
and counts the step; ``train`` runs to ``steps`` with metrics, sample videos and atomic checkpoints. Every rank of a
data-parallel run trains on its share of each global batch (see ``training.updates``).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch

from context_forcing_core.models.config import model_preset
from context_forcing_core.models.loading import load_model
from context_forcing_core.models.wan import WanModel
from context_forcing_core.objectives.curriculum import RolloutCurriculum
from context_forcing_core.objectives.erft import ErrorBank

from .config import OptimConfig, TrainConfig
from .datasets import CLIP_STAGES, load_training_data
from .distributed import DistContext, barrier, broadcast_parameters, shard_model
from .ode_pairs import OdePairs, generate_pairs
from .precision import autocast_context
from .state import TrainState, latest_checkpoint, load_checkpoint, new_ema, save_checkpoint
from .telemetry import MetricsLogger
from .updates import Run, closed_form_teacher, sharded, update_for, write_samples

DMD_STAGES = ("stage1", "stage2")

ODE_PAIR_BATCH = 16
"""Teacher trajectories solved per batch while the ODE-init pairs are generated (memory vs speed; not a result)."""


def _adamw(params, cfg: OptimConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)


def build_run(cfg: TrainConfig, *, teacher: str | None = None, student_init: str | None = None,
              dist: DistContext | None = None) -> Run:
    """Models, optimisers and data for ``cfg``; the critic starts as a copy of the student, as in Self-Forcing.

    On several ranks (``dist``), rank 0's student and teacher weights are broadcast so every replica starts equal.
    """
    dist = dist or DistContext()
    device = torch.device(dist.device if dist.world_size > 1 else cfg.runtime.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {cfg.runtime.device!r} but this machine has no CUDA device; pass --runtime.device cpu")
    data = load_training_data(cfg, model_preset(cfg.model))
    torch.manual_seed(cfg.seed)
    dtype = getattr(torch, cfg.runtime.dtype)
    real = closed_form_teacher(cfg, device)  # a world's teacher by name ("exact"), or None
    if real is not None:
        if teacher:
            raise ValueError(f"teacher {cfg.teacher!r} is closed form; drop --teacher")
    elif cfg.stage not in CLIP_STAGES:  # the DMD real score, or the ODE-init trajectory source
        real = (load_model(teacher) if teacher else WanModel(model_preset(cfg.teacher))).to(device, dtype)
    if real is not None:
        real.eval().requires_grad_(False)
        broadcast_parameters(real, dist)
    if student_init:
        student = load_model(student_init)
    elif cfg.stage == "ode-init" and getattr(real, "config", None) == model_preset(cfg.model):
        student = copy.deepcopy(real)  # the causal student starts from the teacher's weights when it can
    else:
        student = WanModel(model_preset(cfg.model))
    student = student.to(device, dtype).train().requires_grad_(True)
    student.enable_gradient_checkpointing(cfg.runtime.gradient_checkpointing)
    broadcast_parameters(student, dist)
    distil = cfg.stage in DMD_STAGES and cfg.objective == "dmd"
    critic = copy.deepcopy(student) if distil else None
    ema = new_ema(student)
    if sharded(cfg, dist):  # the trained networks only: the frozen teacher stays whole (rank 0 alone solves ODE pairs)
        for net in (student, critic, ema):
            if net is not None:
                shard_model(net, dist)
    state = TrainState(student=student, critic=critic, ema=ema,
                       student_optim=_adamw(student.parameters(), cfg.optim.generator),
                       critic_optim=_adamw(critic.parameters(), cfg.optim.critic) if distil else None,
                       bank=ErrorBank(cfg.teacher_stage.erft) if cfg.stage == "context-teacher" else None)
    curriculum = None
    if cfg.stage == "stage2":
        r = cfg.rollout
        curriculum = RolloutCurriculum(k_min=r.target_frames, n_start=r.curriculum_start, n_end=r.curriculum_end,
                                       ramp_steps=r.curriculum_ramp_steps, target_frames=r.target_frames)
    return Run(cfg=cfg, state=state, teacher=real, prompts=data.prompts, clips=data.clips, uncond=data.uncond.to(device),
               memory=cfg.memory_config(), curriculum=curriculum, dist=dist)


def train_step(run: Run) -> dict[str, float]:
    """One update of the run's stage and objective (``updates.update_for``: e.g. for DMD a critic update every step
    and a student update every ``optim.gen_update_every`` steps), under the config's autocast; counts the step.
    """
    st, cfg = run.state, run.cfg
    update = update_for(cfg)
    with autocast_context(cfg.runtime.device, cfg.runtime.dtype):
        metrics = {"step": st.step} | update(run)
    st.step += 1
    return metrics


def prepare_pairs(run: Run, out: Path) -> None:
    """ODE init: generate (rank 0, resumable) and load the teacher's trajectory pairs into ``run.pairs``."""
    cfg, prompts = run.cfg, run.prompts
    shape = (run.teacher.config.in_channels, cfg.rollout.frames, *cfg.rollout.latent_size)
    kw = dict(num_pairs=cfg.ode.pairs, batch_size=ODE_PAIR_BATCH, shape=shape,
              timesteps_guidance=(cfg.ode.steps, cfg.guidance), seed=cfg.seed)
    folder = out / "ode_pairs"
    if run.dist.is_main:
        generate_pairs(run.teacher, lambda i: prompts[i % len(prompts)][1], run.uncond.cpu(), folder, **kw)
    barrier(run.dist)
    run.pairs = OdePairs(sorted(folder.glob("shard_*.safetensors")))


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
    if cfg.stage == "ode-init" and cfg.objective != "regression" and run.pairs is None:
        prepare_pairs(run, out)
    with MetricsLogger(out, enabled=ctx.is_main, flush_every=cfg.logging.log_every) as log:
        while st.step < cfg.steps:
            start = time.perf_counter()
            metrics = train_step(run)
            metrics["seconds"] = time.perf_counter() - start
            last = st.step == cfg.steps
            log.log(metrics)
            if ctx.is_main and (st.step % cfg.logging.log_every == 0 or last):
                shown = ", ".join(f"{k} {v:.4g}" for k, v in metrics.items() if k != "step")
                print(f"step {st.step}/{cfg.steps}: {shown}", flush=True)
            if ctx.is_main and cfg.logging.sample_every and (st.step % cfg.logging.sample_every == 0 or last):
                write_samples(run, out, log)
            if st.step % cfg.logging.save_every == 0 or last:
                if ctx.is_main or run.sharded:  # sharded: every rank gathers, rank 0 writes
                    save_checkpoint(st, out, write=ctx.is_main)
                barrier(ctx)
