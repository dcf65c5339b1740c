"""The training presets: the toy world's stages (``toy-scenes-*``, CPU minutes) and the authors' Wan2.1-1.3B
settings (``wan-1.3b-*``, docs/method.md section 5). ``preset(name)`` returns a fresh, validated config.
"""

from __future__ import annotations

import dataclasses

from context_forcing_core.objectives.erft import ErftConfig
from context_forcing_core.toyworld.scenes import VISIT_UNIT

from .config import (
    EXACT_TEACHER,
    EmaConfig,
    LoggingConfig,
    OdeConfig,
    OptimConfig,
    Optimisers,
    RolloutConfig,
    RuntimeConfig,
    ScenesConfig,
    TeacherStageConfig,
    TrainConfig,
)


def toy_scenes_teacher() -> TrainConfig:
    """The learned teacher of the toy world: bidirectional flow matching on single-visit clips (21 frames of one
    library picture), 3,000 steps of batch 4, measured beside the exact teachers
    (``context_forcing_core.eval.toy.scene_teachers``); the ODE init's trajectory source. Timestep shift 8: a toy
    token is one flat cell, 192 latent values that repeat 3 colours, so the noise averages out of a token long before
    it does for Wan latents and the picture is decided at sigma above ~0.95; a larger shift spends the steps there
    (the argument behind resolution-dependent shifts).
    """
    return TrainConfig(stage="teacher", steps=3000, batch_size=4, grad_accum=1,
                       optim=Optimisers(generator=OptimConfig(lr=1e-3)), ema=EmaConfig(start=0, decay=0.999),
                       logging=LoggingConfig(save_every=500, log_every=100),
                       teacher_stage=TeacherStageConfig(timestep_shift=8.0))


def toy_scenes_context_teacher() -> TrainConfig:
    """The learned context teacher of the toy world: the learned teacher fine-tuned with ERFT (small banks: 50
    buckets x 32 errors) on a 6-frame target visit after 21-84 context frames laid out like the student's memory,
    the target returning to a scene of the context half of the time; measured as a continuer beside the exact long
    teacher (``context_forcing_core.eval.toy.scene_continuers``), not used by the later stages.
    """
    teacher = toy_scenes_teacher()
    return dataclasses.replace(
        teacher, stage="context-teacher", steps=200, optim=Optimisers(generator=OptimConfig(lr=3e-4)),
        ema=EmaConfig(start=0, decay=0.99), logging=LoggingConfig(save_every=100, log_every=10),
        rollout=RolloutConfig(target_frames=VISIT_UNIT),
        teacher_stage=dataclasses.replace(teacher.teacher_stage, context_min=21, context_max=84,
                                          erft=ErftConfig(capacity=32)))


def toy_scenes_ode_init() -> TrainConfig:
    """ODE-regression init of the toy student from 256 trajectories (24 Euler steps, guidance 3) of a learned
    teacher, the EMA of ``toy-scenes-teacher`` given with ``--teacher``, on single scene prompts.
    """
    return TrainConfig(stage="ode-init", steps=200, batch_size=4, grad_accum=1,
                       optim=Optimisers(generator=OptimConfig(lr=3e-4)), ema=EmaConfig(start=0),
                       logging=LoggingConfig(save_every=100), ode=OdeConfig(pairs=256, steps=24))


def toy_scenes_first_visit() -> TrainConfig:
    """The toy world's ODE init: first-visit regression onto the exact teacher's quantile-coupled samples (one chunk,
    nothing in memory, every prompt), so the student invents library pictures, each about equally often, before any
    stage asks it to remember (``results/sampler-choice/``: 8,000 such steps made the bundled student's init).
    """
    return TrainConfig(stage="ode-init", objective="regression", teacher=EXACT_TEACHER, steps=8000, batch_size=16,
                       grad_accum=1, optim=Optimisers(generator=OptimConfig(lr=5e-4, grad_clip=1.0)),
                       ema=EmaConfig(start=0, decay=0.99), rollout=RolloutConfig(frames=3, target_frames=3),
                       scenes=ScenesConfig(target_coupling="quantile"),
                       logging=LoggingConfig(save_every=500, log_every=100))


def toy_scenes_stage1() -> TrainConfig:
    """Stage 1 DMD on the toy world (CPU minutes): the real score is the exact short teacher (closed form, no
    context), the critic learned, on 21-frame rollouts of single scene prompts.
    """
    return TrainConfig(teacher=EXACT_TEACHER, steps=200, grad_accum=1,
                       optim=Optimisers(generator=OptimConfig(lr=1e-4),
                                        critic=OptimConfig(lr=1e-4, beta1=0.5, beta2=0.95)),
                       ema=EmaConfig(start=50), logging=LoggingConfig(save_every=50))


def toy_scenes_stage2_dmd() -> TrainConfig:
    """Stage 2 contextual DMD on the toy world: ``toy-scenes-stage1`` on rollouts of 42-84 frames, gradient on the
    last 21, the real score the exact long teacher (it reads the student's context); guidance 3 as in Stage 1. Not
    measured: the toy world's Stage 2 recipe is the regression of ``toy-scenes-stage2``.
    """
    return dataclasses.replace(toy_scenes_stage1(), stage="stage2", guidance=3.0,
                               rollout=RolloutConfig(curriculum_start=42, curriculum_end=84, curriculum_ramp_steps=200))


def toy_scenes_stage2() -> TrainConfig:
    """Toy world Stage 2, the measured fallback: on-policy contextual ODE regression onto the exact long teacher
    through 48-frame prompt schedules of 4 scenes in one-unit visits (1.5 s: many cuts and returns per rollout),
    batch 4, gradient through the memory's write path, from scratch or from ``--init``. These are the settings of
    the bundled student's last phase (how it was made: ``toyworld/assets/README.md``); they were not compared
    side by side with the earlier ones. The reading term (weight 5) sharpens the student's own samples onto library
    pictures; without it, first-visit samples stayed ~0.6-0.7 from the nearest picture (``toyworld/assets/README.md``).
    Teacher forcing ramps from 1 to 0.2 over the first 300 steps.
    """
    return TrainConfig(stage="stage2", objective="regression", teacher=EXACT_TEACHER, steps=600, batch_size=4,
                       grad_accum=1, rollout=RolloutConfig(frames=48, target_frames=48, curriculum_start=48,
                                                           curriculum_end=48),
                       ode=OdeConfig(steps=16), optim=Optimisers(generator=OptimConfig(lr=5e-4, grad_clip=1.0)),
                       ema=EmaConfig(start=0, decay=0.99), logging=LoggingConfig(save_every=25, log_every=10),
                       scenes=ScenesConfig(visit_units=(1, 1), memory_grad=True, read_weight=5.0,
                                           teacher_forcing_ramp_steps=300.0))


def toy_scenes_stage1_regression() -> TrainConfig:
    """Toy world Stage 1 by the measured fallback: ``toy-scenes-stage2``'s regression and rollouts, but onto the
    exact short teacher (the last 21 frames), so the student continues visits and never learns to recall beyond
    them; the Stage-1 side of the Stage 1 vs Stage 2 comparison.
    """
    cfg = toy_scenes_stage2()
    return dataclasses.replace(cfg, stage="stage1", rollout=dataclasses.replace(cfg.rollout, target_frames=21))


WAN_1_3B = dict(model="wan2.1-t2v-1.3b", teacher="wan2.1-t2v-1.3b")
WAN_LATENT_SIZE = (60, 104)
"""Latent (H, W) of 480 x 832 Wan video (the VAE's 8x spatial compression)."""


def _wan_runtime(*, checkpointing: bool = False) -> RuntimeConfig:
    """bfloat16 on CUDA, as the authors train; gradient checkpointing where a whole 1.3B teacher step must fit."""
    return RuntimeConfig(dtype="bfloat16", device="cuda", gradient_checkpointing=checkpointing)


def wan_1_3b_context_teacher() -> TrainConfig:
    """The authors' context teacher: 8k steps, batch 8, 5-20 s of context (21-84 latents), ERFT at SVI's settings."""
    return TrainConfig(stage="context-teacher", **WAN_1_3B, steps=8000, batch_size=1, grad_accum=1,
                       optim=Optimisers(generator=OptimConfig(lr=1e-5)), rollout=RolloutConfig(latent_size=WAN_LATENT_SIZE),
                       runtime=_wan_runtime(checkpointing=True),
                       logging=LoggingConfig(save_every=500))


def wan_1_3b_ode_init() -> TrainConfig:
    """ODE init of the causal 1.3B student (CausVid / Self-Forcing style)."""
    return TrainConfig(stage="ode-init", **WAN_1_3B, steps=3000, batch_size=1, grad_accum=1,
                       optim=Optimisers(generator=OptimConfig(lr=2e-6)), rollout=RolloutConfig(latent_size=WAN_LATENT_SIZE),
                       runtime=_wan_runtime(checkpointing=True),
                       logging=LoggingConfig(save_every=500))


def wan_1_3b_stage1() -> TrainConfig:
    """Stage 1 at the authors' settings: 600 iterations, effective batch 64 (8 GPUs x 8 accumulated)."""
    return TrainConfig(**WAN_1_3B, rollout=RolloutConfig(latent_size=WAN_LATENT_SIZE), runtime=_wan_runtime(),
                       grad_accum=8)


def wan_1_3b_stage2() -> TrainConfig:
    """Stage 2 at the authors' settings: 500 iterations, rollouts growing from 84 to 105 frames, guidance 5."""
    return dataclasses.replace(wan_1_3b_stage1(), stage="stage2", steps=500, guidance=5.0)


PRESETS = {"toy-scenes-teacher": toy_scenes_teacher, "toy-scenes-context-teacher": toy_scenes_context_teacher,
           "toy-scenes-ode-init": toy_scenes_ode_init,
           "toy-scenes-first-visit": toy_scenes_first_visit, "toy-scenes-stage1": toy_scenes_stage1,
           "toy-scenes-stage1-regression": toy_scenes_stage1_regression, "toy-scenes-stage2": toy_scenes_stage2,
           "toy-scenes-stage2-dmd": toy_scenes_stage2_dmd,
           "wan-1.3b-context-teacher": wan_1_3b_context_teacher,
           "wan-1.3b-ode-init": wan_1_3b_ode_init, "wan-1.3b-stage1": wan_1_3b_stage1, "wan-1.3b-stage2": wan_1_3b_stage2}


def preset(name: str) -> TrainConfig:
    """The training preset called ``name``."""
    if name not in PRESETS:
        raise ValueError(f"unknown training preset {name!r}; allowed: {', '.join(PRESETS)}")
    return PRESETS[name]()
