"""Typed training configuration, the stage presets, and ``--section.field value`` overrides.

Hyperparameters of the ``wan-1.3b-*`` presets are the authors' (method.md section 5); the ``toy-scenes-*`` presets
shrink everything to the toy world (``context_forcing_core.toyworld.scenes``: scenes that come back) so a stage runs
in minutes on two CPU cores.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field

from context_forcing_core.diffusion.schedule import DEFAULT_STEPS
from context_forcing_core.memory.config import PRESETS as MEMORY_PRESETS
from context_forcing_core.memory.config import MemoryConfig, memory_preset
from context_forcing_core.models.config import PRESETS as MODEL_PRESETS
from context_forcing_core.objectives.context_teacher import ContextLayout
from context_forcing_core.objectives.erft import ErftConfig
from context_forcing_core.toyworld.exact_teacher import MAX_BALANCED_GROUP
from context_forcing_core.toyworld.scenes import VISIT_UNIT

STAGES = ("teacher", "context-teacher", "ode-init", "stage1", "stage2")
EXACT_TEACHER = "exact"
READ_TARGETS = ("reading", "endpoint", "balanced")
"""Values of ``TrainConfig.read_onto``."""
TARGET_COUPLINGS = ("ode", "quantile")
"""Values of ``TrainConfig.target_coupling``."""
"""``teacher`` value of the scene world's closed-form teacher (``toyworld.exact_teacher``), not an architecture."""


@dataclass(kw_only=True, slots=True)
class OptimConfig:
    """AdamW settings of one network."""

    lr: float = 2e-6
    """Learning rate."""
    beta1: float = 0.9
    """AdamW beta1."""
    beta2: float = 0.999
    """AdamW beta2."""
    weight_decay: float = 0.01
    """Decoupled weight decay."""
    grad_clip: float = 2.0
    """Max gradient norm (0 disables clipping)."""

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if not (0 <= self.beta1 < 1 and 0 <= self.beta2 < 1):
            raise ValueError(f"AdamW betas must lie in [0, 1), got ({self.beta1}, {self.beta2})")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("weight_decay and grad_clip must be non-negative")


@dataclass(kw_only=True, slots=True)
class TrainConfig:
    """One training stage: teacher, context teacher, ODE init, Stage 1 DMD or Stage 2 contextual DMD."""

    stage: str = "stage1"
    """"teacher" (bidirectional flow matching on clips), "context-teacher" (continuation with ERFT), "ode-init"
    (regression on teacher ODE pairs), "stage1" (local DMD on 21 frames) or "stage2" (contextual DMD on long
    self-rollouts)."""
    model: str = "toy"
    """Architecture preset of student and critic."""
    teacher: str = "toy"
    """Architecture preset of the frozen teacher (real score)."""
    memory: str = "context_forcing"
    """Student memory preset used in rollouts (as at inference)."""
    memory_tau: float | None = None
    """Surprisal threshold of that memory (None: the preset's, 0.95 for Wan and the toy world, where a cut makes
    consecutive chunks dissimilar)."""
    steps: int = 600
    """Optimiser steps of the critic (the generator steps every ``gen_update_every``)."""
    batch_size: int = 1
    """Prompts per micro-batch."""
    grad_accum: int = 8
    """Micro-batches accumulated per optimiser step (effective batch = batch_size * grad_accum * world size)."""
    generator_optim: OptimConfig = field(default_factory=OptimConfig)
    """Optimiser of the trained network: the student (authors: lr 2e-6, betas 0.9, 0.999), or the teacher itself."""
    critic_optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=4e-7, beta1=0.5, beta2=0.95))
    """Critic (fake score) optimiser (authors: lr 4e-7, betas 0.5, 0.95)."""
    gen_update_every: int = 5
    """Generator update once per this many critic updates (dfake_gen_update_ratio)."""
    guidance: float = 3.0
    """Real-score guidance s in cond + s (cond - uncond): 3 in Stage 1, 5 in Stage 2."""
    ema_decay: float = 0.99
    """EMA decay of the student weights."""
    ema_start: int = 200
    """Step from which the EMA is updated (a copy of the student before)."""
    ema_warmup: bool = True
    """Warm the EMA up: decay min(ema_decay, (1 + n) / (10 + n)) at the n-th update after ``ema_start``, so an
    early checkpoint's EMA is not mostly the initialisation (at 0.999 from step 0 it would be 0.999^n of it)."""
    rollout_frames: int = 21
    """Stage 1 rollout length in latent frames (Stage 2 draws from the curriculum); clip length of the teacher stage."""
    target_frames: int = 21
    """Trailing frames scored by DMD."""
    curriculum_start: int = 84
    """Stage 2: longest rollout at step 0 (latent frames)."""
    curriculum_end: int = 105
    """Stage 2: longest rollout after the ramp."""
    curriculum_ramp_steps: int = 600
    """Stage 2: steps of the linear ramp."""
    timestep_shift: float = 5.0
    """Shift of the flow-matching timesteps of the teacher stages (1 = uniform)."""
    high_noise_fraction: float = 0.0
    """Teacher stage: share of clips whose timestep is drawn at shift 50 (t mostly above 950), where only the prompt
    tells the colours; the toy teacher otherwise learns its text pathway too slowly (see ``toy_scenes_teacher``)."""
    flow_weighting: str = "none"
    """Teacher stage: per-timestep weight of the flow-matching loss, "none" or "bell" (``flow.timestep_weight``)."""
    context_min: int = 21
    """Context teacher: fewest context latents before the target (whole chunks)."""
    context_max: int = 84
    """Context teacher: most context latents before the target (authors: 5-20 s of earlier video)."""
    layout: ContextLayout = field(default_factory=ContextLayout)
    """Context the teacher and the critic see: the student's memory layout (default) or contiguous."""
    erft: ErftConfig = field(default_factory=ErftConfig)
    """Error-recycling banks and injection probabilities of the context teacher (``erft.clean_prob 1`` = off)."""
    ode_pairs: int = 1000
    """ODE init: teacher trajectories generated and cached before training."""
    ode_steps: int = 48
    """ODE init: Euler steps of the teacher's ODE (a multiple of the student's step count, ``DEFAULT_STEPS``)."""
    fsdp: bool = False
    """Shard student, critic and EMA with FSDP2 across the ranks (memory / world size; the teacher stays whole). All
    rollouts of an update then share one exit step (drawn per step), so results still do not depend on the ranks."""
    gradient_checkpointing: bool = False
    """Recompute block activations in backward (student and critic)."""
    sample_every: int = 0
    """Toy world: write sample videos of the EMA student every this many steps (0: never), with the scene oracle's
    recall in the metrics (``training.samples``)."""
    sample_videos: int = 2
    """Toy sample videos per ``sample_every`` (fixed visit schedules drawn from ``seed``)."""
    sample_seconds: float = 20.0
    """Length of each toy sample video in toy seconds (rounded up to whole visits)."""
    text_dropout: float = 0.1
    """Teacher stages: probability that a clip's prompt is replaced by the negative prompt, so guidance has an
    unconditional branch to subtract."""
    objective: str = "dmd"
    """Stage 1 / 2: "dmd" (DMD with the learned critic) or "regression" (on-policy ODE regression onto the exact
    teacher through prompt schedules, ``objectives.scheduled_regression``; scene world only). Regression in Stage 2
    asks the exact long teacher, which sees the student's memory; in Stage 1 the exact short teacher, which sees
    the last ``target_frames`` frames (the chunk at their end), as the paper's 21-frame teacher does."""
    world: str = "scenes"
    """Toy world of a run without ``data``: "scenes" (visits to a finite picture library that come back,
    ``toyworld.scenes``; ``teacher exact`` is its closed-form teacher), the only one left."""
    memory_grad: bool = False
    """Scene world, regression: backpropagate through the memory's write path (the t = 0 commit and re-cache passes
    of earlier chunks), so the student learns what to store as well as how to read it
    (``objectives.scheduled_regression``)."""
    read_weight: float = 0.0
    """Scene world, regression: weight of the reading term (``objectives.scheduled_regression``): the student's own
    few-step sample of each chunk regresses onto the exact teacher's reading of it (the library picture it shows, or
    the one its context holds); 0 leaves it out."""
    read_onto: str = "reading"
    """Scene world, regression: target of the reading term, "reading" (the library picture the teacher reads in the
    student's sample), "endpoint" (the teacher's ODE end point from the chunk's noise: keeps the teacher's variety)
    or "balanced" (the reading, but chunks that must invent get pictures jointly, each of the prompt's K equally
    often: ``exact_teacher.balanced_reading``; a micro-batch is then ``batch_size`` copies of one schedule, same
    prompts, other noise, so each invention has batch_size samples to share out)."""
    target_coupling: str = "ode"
    """Scene world, regression: how the exact teacher's target depends on the chunk's noise: "ode" (its
    probability-flow end point from that noise, ``exact_sample``) or "quantile" (the same distribution, the picture
    picked by the quantile of the noise's sum, ``exact_teacher.coupled_sample``: a map a small student learns, see
    ``results/sampler-choice/``)."""
    scenes_per_video: int = 4
    """Scene world, regression: distinct scenes per training schedule."""
    scene_visit_units: tuple[int, int] = (1, 2)
    """Scene world, regression: shortest and longest visit of a training schedule, in units of
    ``scenes.VISIT_UNIT`` frames (short visits: many cuts and returns per rollout)."""
    scene_min_return_gap: int = 0
    """Scene world, regression: fewest frames between a scene's visit and its return in a training schedule (0: the
    schedule's own draws); e.g. 18 keeps every return out of the short teacher's 21-frame window."""
    teacher_forcing_end: float = 0.2
    """Scene world, regression: share of rollouts that commit the teacher's chunks instead of the student's, after
    a linear ramp from 1 over the first half of the steps."""
    data: str = ""
    """Folder written by ``prepare-data``: a latent cache (teacher, context teacher) or a prompt cache (ODE init,
    Stage 1, Stage 2); empty = the toy world."""
    latent_size: tuple[int, int] = (8, 8)
    """Latent (H, W): 8 x 8 for the toy codec, 60 x 104 for 480 x 832 Wan video."""
    dtype: str = "float32"
    """Parameter dtype: float32 or bfloat16."""
    device: str = "cpu"
    """Device of the single-process run (distributed runs set it per rank)."""
    seed: int = 0
    """Seed of every random draw."""
    log_every: int = 10
    """Steps between metric lines."""
    save_every: int = 100
    """Steps between checkpoints."""

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage {self.stage!r}; allowed: {', '.join(STAGES)}")
        if self.world != "scenes":
            raise ValueError(f"world {self.world!r}: that toy world was retired; the toy world is 'scenes'")
        if self.objective not in ("dmd", "regression"):
            raise ValueError(f"objective {self.objective!r}; allowed: dmd, regression")
        if self.objective == "regression" and (self.stage not in ("stage1", "stage2") or self.data
                                               or self.teacher != EXACT_TEACHER):
            raise ValueError("objective regression is Stage 1 or 2 on the toy world (no data) with teacher 'exact'")
        if self.teacher == EXACT_TEACHER and (self.data or self.stage not in ("stage1", "stage2")):
            raise ValueError("teacher 'exact' is the toy world's closed-form teacher (stage1 / stage2, no data)")
        if len(self.scene_visit_units) != 2 or not 1 <= self.scene_visit_units[0] <= self.scene_visit_units[1]:
            raise ValueError(f"scene_visit_units must be (shortest, longest) >= 1, got {self.scene_visit_units}")
        if not (self.read_weight >= 0 and math.isfinite(self.read_weight)):
            raise ValueError(f"read_weight must be a finite number >= 0, got {self.read_weight}")
        if not self.data and self.stage == "context-teacher" and self.context_max % VISIT_UNIT:
            raise ValueError(f"the scene world's context clips are whole visits: context_max must be a multiple of "
                             f"{VISIT_UNIT} frames, got {self.context_max}")
        if self.read_onto not in READ_TARGETS:
            raise ValueError(f"read_onto must be one of {', '.join(READ_TARGETS)}, got {self.read_onto!r}")
        if self.target_coupling not in TARGET_COUPLINGS:
            raise ValueError(f"target_coupling must be one of {', '.join(TARGET_COUPLINGS)}, "
                             f"got {self.target_coupling!r}")
        if self.read_onto == "balanced" and self.batch_size > MAX_BALANCED_GROUP:
            raise ValueError(f"the balanced reading shares pictures out among at most {MAX_BALANCED_GROUP} copies: "
                             f"batch_size must be <= {MAX_BALANCED_GROUP}, got {self.batch_size}")
        if self.scene_min_return_gap < 0:
            raise ValueError(f"scene_min_return_gap must be >= 0 frames, got {self.scene_min_return_gap}")
        if not 0 <= self.teacher_forcing_end <= 1 or self.scenes_per_video < 2:
            raise ValueError("teacher_forcing_end must lie in [0, 1] and scenes_per_video be at least 2")
        for name in ("model", "teacher"):
            if name == "teacher" and self.teacher == EXACT_TEACHER:
                continue
            if getattr(self, name) not in MODEL_PRESETS:
                raise ValueError(f"{name} preset {getattr(self, name)!r}; allowed: {', '.join(sorted(MODEL_PRESETS))}")
        if self.memory not in MEMORY_PRESETS:
            raise ValueError(f"memory preset {self.memory!r}; allowed: {', '.join(sorted(MEMORY_PRESETS))}")
        self.memory_config()  # validates memory_tau
        for name in ("steps", "batch_size", "grad_accum", "gen_update_every", "rollout_frames", "target_frames",
                     "log_every", "save_every", "ode_pairs", "ode_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        chunk, steps = self.memory_config().chunk_frames, len(DEFAULT_STEPS)
        if self.target_frames > self.rollout_frames or self.target_frames % chunk or self.rollout_frames % chunk:
            raise ValueError(f"rollout_frames and target_frames must be whole {chunk}-frame chunks with target <= rollout")
        if self.stage == "stage2" and not self.target_frames <= self.curriculum_start <= self.curriculum_end:
            raise ValueError("stage2 needs target_frames <= curriculum_start <= curriculum_end")
        if self.stage == "context-teacher" and not (0 < self.context_min <= self.context_max and
                                                    self.context_min % chunk == 0 and self.context_max % chunk == 0):
            raise ValueError(f"context-teacher needs 0 < context_min <= context_max, whole {chunk}-frame chunks")
        if self.ode_steps % steps:
            raise ValueError(f"ode_steps must be a multiple of the student's {steps} steps, got {self.ode_steps}")
        if not 0 <= self.text_dropout < 1:
            raise ValueError(f"text_dropout must lie in [0, 1), got {self.text_dropout}")
        if self.sample_every and self.data:
            raise ValueError("sample_every writes toy-world sample videos; set it to 0 when training on --data")
        if not 0.0 <= self.high_noise_fraction <= 1.0:
            raise ValueError(f"high_noise_fraction must lie in [0, 1], got {self.high_noise_fraction}")
        if self.flow_weighting not in ("none", "bell"):
            raise ValueError(f"flow_weighting {self.flow_weighting!r}; allowed: none, bell")
        if self.timestep_shift <= 0 or self.sample_every < 0:
            raise ValueError("timestep_shift must be positive and sample_every non-negative")
        if self.sample_videos < 1 or not self.sample_seconds > 0:
            raise ValueError(f"sample_videos ({self.sample_videos}) and sample_seconds ({self.sample_seconds}) "
                             "must be positive")
        if not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must lie in (0, 1), got {self.ema_decay}")
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype {self.dtype!r}; allowed: float32, bfloat16")

    def memory_config(self) -> MemoryConfig:
        """The student's memory: the preset ``memory`` with ``memory_tau`` when set."""
        cfg = memory_preset(self.memory)
        return cfg if self.memory_tau is None else cfg.replace(tau=self.memory_tau)

    def to_json(self) -> str:
        """The resolved configuration, saved beside every run."""
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


def toy_scenes_teacher() -> TrainConfig:
    """The learned teacher of the toy world: bidirectional flow matching on single-visit clips (21 frames of one
    library picture), 3,000 steps of batch 4, measured beside the exact teachers
    (``context_forcing_core.eval.toy.scene_teachers``); the ODE init's trajectory source. Timestep shift 8: a toy
    token is one flat cell, 192 latent values that repeat 3 colours, so the noise averages out of a token long before
    it does for Wan latents and the picture is decided at sigma above ~0.95; a larger shift spends the steps there
    (the argument behind resolution-dependent shifts).
    """
    return TrainConfig(stage="teacher", world="scenes", steps=3000, batch_size=4, grad_accum=1,
                       generator_optim=OptimConfig(lr=1e-3), ema_start=0, ema_decay=0.999, save_every=500,
                       log_every=100, timestep_shift=8.0)


def toy_scenes_context_teacher() -> TrainConfig:
    """The learned context teacher of the toy world: the learned teacher fine-tuned with ERFT (small banks: 50
    buckets x 32 errors) on a 6-frame target visit after 21-84 context frames laid out like the student's memory,
    the target returning to a scene of the context half of the time; measured as a continuer beside the exact long
    teacher (``context_forcing_core.eval.toy.scene_continuers``), not used by the later stages.
    """
    return dataclasses.replace(toy_scenes_teacher(), stage="context-teacher", steps=200,
                               generator_optim=OptimConfig(lr=3e-4), ema_decay=0.99, save_every=100, log_every=10,
                               context_min=21, context_max=84, target_frames=VISIT_UNIT, erft=ErftConfig(capacity=32))


def toy_scenes_ode_init() -> TrainConfig:
    """ODE-regression init of the toy student from 256 trajectories (24 Euler steps, guidance 3) of a learned
    teacher, the EMA of ``toy-scenes-teacher`` given with ``--teacher``, on single scene prompts.
    """
    return TrainConfig(stage="ode-init", world="scenes", steps=200, batch_size=4, grad_accum=1,
                       generator_optim=OptimConfig(lr=3e-4), ema_start=0, save_every=100, ode_pairs=256, ode_steps=24)


def toy_scenes_stage1() -> TrainConfig:
    """Stage 1 DMD on the toy world (CPU minutes): the real score is the exact short teacher (closed form, no
    context), the critic learned, on 21-frame rollouts of single scene prompts.
    """
    return TrainConfig(world="scenes", teacher=EXACT_TEACHER, steps=200, grad_accum=1,
                       generator_optim=OptimConfig(lr=1e-4), critic_optim=OptimConfig(lr=1e-4, beta1=0.5, beta2=0.95),
                       ema_start=50, save_every=50)


def toy_scenes_stage2_dmd() -> TrainConfig:
    """Stage 2 contextual DMD on the toy world: ``toy-scenes-stage1`` on rollouts of 42-84 frames, gradient on the
    last 21, the real score the exact long teacher (it reads the student's context); guidance 3 as in Stage 1. Not
    measured: the toy world's Stage 2 recipe is the regression of ``toy-scenes-stage2``.
    """
    return dataclasses.replace(toy_scenes_stage1(), stage="stage2", guidance=3.0, curriculum_start=42,
                               curriculum_end=84, curriculum_ramp_steps=200)


def toy_scenes_stage2() -> TrainConfig:
    """Scene world Stage 2, the measured fallback: on-policy contextual ODE regression onto the exact long teacher
    through 48-frame prompt schedules of 4 scenes in one-unit visits (1.5 s: many cuts and returns per rollout),
    batch 4, gradient through the memory's write path, from scratch or from ``--init``. These are the settings of
    the bundled student's last phase (how it was made: ``eval/toy/assets/README.md``); they were not compared
    side by side with the earlier ones. The reading term (weight 5) sharpens the student's own samples onto library
    pictures; without it, first-visit samples stayed ~0.6-0.7 from the nearest picture (``eval/toy/assets/README.md``).
    """
    return TrainConfig(stage="stage2", objective="regression", world="scenes", teacher=EXACT_TEACHER, steps=600,
                       batch_size=4, grad_accum=1, rollout_frames=48, target_frames=48, curriculum_start=48,
                       curriculum_end=48, ode_steps=16, generator_optim=OptimConfig(lr=5e-4, grad_clip=1.0), ema_start=0,
                       ema_decay=0.99, save_every=25, log_every=10, scene_visit_units=(1, 1), memory_grad=True,
                       read_weight=5.0)


def toy_scenes_stage1_regression() -> TrainConfig:
    """Scene world Stage 1 by the measured fallback: ``toy-scenes-stage2``'s regression and rollouts, but onto the
    exact short teacher (the last 21 frames), so the student continues visits and never learns to recall beyond
    them; the Stage-1 side of the Stage 1 vs Stage 2 comparison.
    """
    return dataclasses.replace(toy_scenes_stage2(), stage="stage1", target_frames=21)


def wan_1_3b_context_teacher() -> TrainConfig:
    """The authors' context teacher: 8k steps, batch 8, 5-20 s of context (21-84 latents), ERFT at SVI's settings."""
    return TrainConfig(stage="context-teacher", model="wan2.1-t2v-1.3b", teacher="wan2.1-t2v-1.3b", steps=8000,
                       batch_size=1, grad_accum=1, generator_optim=OptimConfig(lr=1e-5), latent_size=(60, 104),
                       dtype="bfloat16", device="cuda", gradient_checkpointing=True, save_every=500)


def wan_1_3b_ode_init() -> TrainConfig:
    """ODE init of the causal 1.3B student (CausVid / Self-Forcing style)."""
    return TrainConfig(stage="ode-init", model="wan2.1-t2v-1.3b", teacher="wan2.1-t2v-1.3b", steps=3000, batch_size=1,
                       grad_accum=1, generator_optim=OptimConfig(lr=2e-6), latent_size=(60, 104), dtype="bfloat16",
                       device="cuda", gradient_checkpointing=True, save_every=500)


def wan_1_3b_stage1() -> TrainConfig:
    """Stage 1 at the authors' settings: 600 iterations, effective batch 64 (8 GPUs x 8 accumulated)."""
    return TrainConfig(model="wan2.1-t2v-1.3b", teacher="wan2.1-t2v-1.3b", latent_size=(60, 104), dtype="bfloat16",
                       device="cuda", grad_accum=8)


def wan_1_3b_stage2() -> TrainConfig:
    """Stage 2 at the authors' settings: 500 iterations, rollouts growing from 84 to 105 frames, guidance 5."""
    return dataclasses.replace(wan_1_3b_stage1(), stage="stage2", steps=500, guidance=5.0)


PRESETS = {"toy-scenes-teacher": toy_scenes_teacher, "toy-scenes-context-teacher": toy_scenes_context_teacher,
           "toy-scenes-ode-init": toy_scenes_ode_init, "toy-scenes-stage1": toy_scenes_stage1,
           "toy-scenes-stage1-regression": toy_scenes_stage1_regression, "toy-scenes-stage2": toy_scenes_stage2,
           "toy-scenes-stage2-dmd": toy_scenes_stage2_dmd,
           "wan-1.3b-context-teacher": wan_1_3b_context_teacher,
           "wan-1.3b-ode-init": wan_1_3b_ode_init, "wan-1.3b-stage1": wan_1_3b_stage1, "wan-1.3b-stage2": wan_1_3b_stage2}


def preset(name: str) -> TrainConfig:
    """The training preset called ``name``."""
    if name not in PRESETS:
        raise ValueError(f"unknown training preset {name!r}; allowed: {', '.join(PRESETS)}")
    return PRESETS[name]()


def apply_overrides(cfg: TrainConfig, overrides: dict[str, str]) -> TrainConfig:
    """Return ``cfg`` with ``{"section.field" or "field": text}`` overrides parsed by the field's type, validated."""
    hints = typing.get_type_hints(TrainConfig)
    changes: dict[str, typing.Any] = {}
    for key, text in overrides.items():
        head, _, sub = key.partition(".")
        if head not in hints:
            raise ValueError(f"unknown setting {key!r}; settings: {', '.join(sorted(hints))}")
        if sub:
            inner = changes.get(head) or dataclasses.replace(getattr(cfg, head))
            sub_hints = typing.get_type_hints(type(inner))
            if sub not in sub_hints:
                raise ValueError(f"unknown setting {key!r}; {head} has: {', '.join(sorted(sub_hints))}")
            changes[head] = dataclasses.replace(inner, **{sub: _parse(text, sub_hints[sub], key)})
        else:
            changes[head] = _parse(text, hints[head], key)
    return dataclasses.replace(cfg, **changes)


def _parse(text: str, kind: typing.Any, key: str) -> typing.Any:
    if type(None) in typing.get_args(kind):  # "X | None": the word none, or an X
        inner = next(k for k in typing.get_args(kind) if k is not type(None))
        return None if text.lower() == "none" else _parse(text, inner, key)
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        if typing.get_origin(kind) is typing.Literal:
            if text not in typing.get_args(kind):
                raise ValueError(text)
            return text
        if typing.get_origin(kind) is tuple:
            return tuple(int(v) for v in text.replace("x", ",").split(","))
        return kind(text)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{key}: cannot read {text!r} as {getattr(kind, '__name__', kind)}") from err
