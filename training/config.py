"""Typed training configuration by concern, ``--section.field value`` overrides, and the reading of old flat configs
(the presets are in :mod:`training.presets`).

A :class:`TrainConfig` holds what every stage needs (stage, objective, networks and memory, steps, batch, seed, data)
and one section per concern (optimisers, EMA, rollouts, the teacher stages, the ODE, the toy world's regression,
runtime, logging); each section checks itself, :class:`TrainConfig` checks how they fit.

Configs written before the sections (one flat level: ``"ema_decay": 0.99``, ``"world": "scenes"``) still load
(:func:`config_from_dict`), and the old flat names still work as overrides (``--ema_decay 0.99``):
:data:`LEGACY_KEYS` maps each to its place.
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
from context_forcing_core.models.config import model_preset
from context_forcing_core.objectives.context_teacher import ContextLayout
from context_forcing_core.objectives.erft import ErftConfig
from context_forcing_core.toyworld.exact_teacher import MAX_BALANCED_GROUP
from context_forcing_core.toyworld.scenes import VISIT_UNIT

STAGES = ("teacher", "context-teacher", "ode-init", "stage1", "stage2")
OBJECTIVES = ("dmd", "regression")
EXACT_TEACHER = "exact"
"""``teacher`` value of the toy world's closed-form teacher (``toyworld.exact_teacher``), not an architecture."""
READ_TARGETS = ("reading", "endpoint", "balanced")
"""Values of ``ScenesConfig.read_onto``."""
TARGET_COUPLINGS = ("ode", "quantile")
"""Values of ``ScenesConfig.target_coupling``."""
TOY_WORLD = "scenes"
"""The one toy world left (the ``world`` of old configs)."""


def _positive(section: object, *names: str) -> None:
    for name in names:
        if not getattr(section, name) > 0:
            raise ValueError(f"{name} must be positive, got {getattr(section, name)}")


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
class Optimisers:
    """The trained networks' optimisers and how often the generator steps."""

    generator: OptimConfig = field(default_factory=OptimConfig)
    """Optimiser of the trained network: the student (authors: lr 2e-6, betas 0.9, 0.999), or the teacher itself."""
    critic: OptimConfig = field(default_factory=lambda: OptimConfig(lr=4e-7, beta1=0.5, beta2=0.95))
    """Critic (fake score) optimiser (authors: lr 4e-7, betas 0.5, 0.95)."""
    gen_update_every: int = 5
    """DMD: one generator update per this many critic updates (dfake_gen_update_ratio)."""

    def __post_init__(self) -> None:
        _positive(self, "gen_update_every")


@dataclass(kw_only=True, slots=True)
class EmaConfig:
    """Exponential moving average of the student weights (the inference weights)."""

    decay: float = 0.99
    """EMA decay."""
    start: int = 200
    """Step from which the EMA is updated (a copy of the student before)."""
    warmup: bool = True
    """Warm the EMA up: decay min(decay, (1 + n) / (10 + n)) at the n-th update after ``start``, so an early
    checkpoint's EMA is not mostly the initialisation (at 0.999 from step 0 it would be 0.999^n of it)."""

    def __post_init__(self) -> None:
        if not 0 < self.decay < 1:
            raise ValueError(f"ema decay must lie in (0, 1), got {self.decay}")
        if self.start < 0:
            raise ValueError(f"ema start must be >= 0, got {self.start}")


@dataclass(kw_only=True, slots=True)
class RolloutConfig:
    """Video lengths and shape: rollouts, DMD targets, the Stage 2 curriculum, and the context teacher and critic see."""

    frames: int = 21
    """Stage 1 rollout length in latent frames (Stage 2 draws from the curriculum); clip length of the teacher stage."""
    target_frames: int = 21
    """Trailing frames scored by DMD (regression: frames of the rollout regressed; context teacher: the target)."""
    curriculum_start: int = 84
    """Stage 2: longest rollout at step 0 (latent frames)."""
    curriculum_end: int = 105
    """Stage 2: longest rollout after the ramp."""
    curriculum_ramp_steps: int = 600
    """Stage 2: steps of the linear ramp."""
    latent_size: tuple[int, int] = (8, 8)
    """Latent (H, W): 8 x 8 for the toy codec, 60 x 104 for 480 x 832 Wan video."""
    layout: ContextLayout = field(default_factory=ContextLayout)
    """Context the teacher and the critic see of the earlier frames: the student's memory layout (default) or
    contiguous (the context teacher's clips are laid out the same way)."""

    def __post_init__(self) -> None:
        _positive(self, "frames", "target_frames")
        if self.target_frames > self.frames:
            raise ValueError(f"target <= rollout: target_frames {self.target_frames} > frames {self.frames}")
        if len(self.latent_size) != 2 or min(self.latent_size) < 1:
            raise ValueError(f"latent_size must be (H, W) >= 1, got {self.latent_size}")


@dataclass(kw_only=True, slots=True)
class TeacherStageConfig:
    """The teacher stages' flow matching (teacher, context teacher), and the context teacher's clips and error
    recycling (CF Sec. 5).
    """

    timestep_shift: float = 5.0
    """Shift of the flow-matching timesteps (1 = uniform)."""
    high_noise_fraction: float = 0.0
    """Teacher stage: share of clips whose timestep is drawn at shift 50 (t mostly above 950), where only the prompt
    tells the colours; the toy teacher otherwise learns its text pathway too slowly (see ``toy_scenes_teacher``)."""
    flow_weighting: str = "none"
    """Teacher stage: per-timestep weight of the flow-matching loss, "none" or "bell" (``flow.timestep_weight``)."""
    text_dropout: float = 0.1
    """Probability that a clip's prompt is replaced by the negative prompt, so guidance has an unconditional branch
    to subtract."""
    context_min: int = 21
    """Context teacher: fewest context latents before the target (whole chunks)."""
    context_max: int = 84
    """Context teacher: most context latents before the target (authors: 5-20 s of earlier video)."""
    erft: ErftConfig = field(default_factory=ErftConfig)
    """Context teacher: error-recycling banks and injection probabilities (``erft.clean_prob 1`` = off)."""

    def __post_init__(self) -> None:
        _positive(self, "timestep_shift")
        if not 0 < self.context_min <= self.context_max:
            raise ValueError(f"the context teacher needs 0 < context_min <= context_max, got {self.context_min}, "
                             f"{self.context_max}")
        if not 0.0 <= self.high_noise_fraction <= 1.0:
            raise ValueError(f"high_noise_fraction must lie in [0, 1], got {self.high_noise_fraction}")
        if self.flow_weighting not in ("none", "bell"):
            raise ValueError(f"flow_weighting {self.flow_weighting!r}; allowed: none, bell")
        if not 0 <= self.text_dropout < 1:
            raise ValueError(f"text_dropout must lie in [0, 1), got {self.text_dropout}")


@dataclass(kw_only=True, slots=True)
class OdeConfig:
    """The teacher's probability-flow ODE: the ODE init's pairs, and the toy world's regression targets."""

    pairs: int = 1000
    """ODE init: teacher trajectories generated and cached before training."""
    steps: int = 48
    """Euler steps of the teacher's ODE (a multiple of the student's step count, ``DEFAULT_STEPS``); also the exact
    teacher's steps of the toy world's regression targets."""

    def __post_init__(self) -> None:
        _positive(self, "pairs", "steps")
        if self.steps % len(DEFAULT_STEPS):
            raise ValueError(f"ode steps must be a multiple of the student's {len(DEFAULT_STEPS)} steps, got {self.steps}")


@dataclass(kw_only=True, slots=True)
class ScenesConfig:
    """The toy world's on-policy regression (``objective regression``, ``objectives.scheduled_regression``): its
    visit schedules, teacher forcing, and targets.
    """

    per_video: int = 4
    """Distinct scenes per training schedule."""
    visit_units: tuple[int, int] = (1, 2)
    """Shortest and longest visit of a training schedule, in units of ``scenes.VISIT_UNIT`` frames (short visits:
    many cuts and returns per rollout)."""
    min_return_gap: int = 0
    """Fewest frames between a scene's visit and its return in a training schedule (0: the schedule's own draws);
    e.g. 18 keeps every return out of the short teacher's 21-frame window."""
    teacher_forcing_end: float = 0.2
    """Share of rollouts that commit the teacher's chunks instead of the student's, after a linear ramp from 1."""
    teacher_forcing_ramp_steps: float = 300.0
    """Steps of that ramp (a number of its own, so a resumed run with more ``steps`` keeps its schedule); before
    this setting the ramp was half the run's steps."""
    read_weight: float = 0.0
    """Weight of the reading term: the student's own few-step sample of each chunk regresses onto the exact
    teacher's reading of it (the library picture it shows, or the one its context holds); 0 leaves it out."""
    read_onto: str = "reading"
    """Target of the reading term, "reading" (the library picture the teacher reads in the student's sample),
    "endpoint" (the teacher's ODE end point from the chunk's noise: keeps the teacher's variety) or "balanced" (the
    reading, but chunks that must invent get pictures jointly, each of the prompt's K equally often:
    ``exact_teacher.balanced_reading``; a micro-batch is then ``batch_size`` copies of one schedule, same prompts,
    other noise, so each invention has batch_size samples to share out)."""
    target_coupling: str = "ode"
    """How the exact teacher's target depends on the chunk's noise: "ode" (its probability-flow end point from that
    noise, ``exact_sample``) or "quantile" (the same distribution, the picture picked by the quantile of the noise's
    sum, ``exact_teacher.coupled_sample``: a map a small student learns, see ``results/sampler-choice/``)."""
    memory_grad: bool = False
    """Backpropagate through the memory's write path (the t = 0 commit and re-cache passes of earlier chunks), so
    the student learns what to store as well as how to read it."""

    def __post_init__(self) -> None:
        if self.per_video < 2:
            raise ValueError(f"scenes per_video must be at least 2, got {self.per_video}")
        if len(self.visit_units) != 2 or not 1 <= self.visit_units[0] <= self.visit_units[1]:
            raise ValueError(f"visit_units must be (shortest, longest) >= 1, got {self.visit_units}")
        if self.min_return_gap < 0:
            raise ValueError(f"min_return_gap must be >= 0 frames, got {self.min_return_gap}")
        if not 0 <= self.teacher_forcing_end <= 1:
            raise ValueError(f"teacher_forcing_end must lie in [0, 1], got {self.teacher_forcing_end}")
        if not (self.teacher_forcing_ramp_steps >= 0 and math.isfinite(self.teacher_forcing_ramp_steps)):
            raise ValueError(f"teacher_forcing_ramp_steps must be a finite number >= 0, "
                             f"got {self.teacher_forcing_ramp_steps}")
        if not (self.read_weight >= 0 and math.isfinite(self.read_weight)):
            raise ValueError(f"read_weight must be a finite number >= 0, got {self.read_weight}")
        if self.read_onto not in READ_TARGETS:
            raise ValueError(f"read_onto must be one of {', '.join(READ_TARGETS)}, got {self.read_onto!r}")
        if self.target_coupling not in TARGET_COUPLINGS:
            raise ValueError(f"target_coupling must be one of {', '.join(TARGET_COUPLINGS)}, "
                             f"got {self.target_coupling!r}")


@dataclass(kw_only=True, slots=True)
class RuntimeConfig:
    """Where and how the networks run."""

    device: str = "cpu"
    """Device of the single-process run (distributed runs set it per rank)."""
    dtype: str = "float32"
    """Parameter dtype: float32 or bfloat16."""
    fsdp: bool = False
    """Shard student, critic and EMA with FSDP2 across the ranks (memory / world size; the teacher stays whole). All
    rollouts of an update then share one exit step (drawn per step), so results still do not depend on the ranks."""
    gradient_checkpointing: bool = False
    """Recompute block activations in backward (student and critic)."""

    def __post_init__(self) -> None:
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"dtype {self.dtype!r}; allowed: float32, bfloat16")


@dataclass(kw_only=True, slots=True)
class LoggingConfig:
    """Metric lines, checkpoints and sample videos."""

    log_every: int = 10
    """Steps between metric lines."""
    save_every: int = 100
    """Steps between checkpoints."""
    sample_every: int = 0
    """Toy world: write sample videos of the EMA student every this many steps (0: never), with the scene oracle's
    recall in the metrics (``training.samples``)."""
    sample_videos: int = 2
    """Toy sample videos per ``sample_every`` (fixed visit schedules drawn from ``seed``)."""
    sample_seconds: float = 20.0
    """Length of each toy sample video in toy seconds (rounded up to whole visits)."""

    def __post_init__(self) -> None:
        _positive(self, "log_every", "save_every", "sample_videos", "sample_seconds")
        if self.sample_every < 0:
            raise ValueError(f"sample_every must be non-negative, got {self.sample_every}")


@dataclass(kw_only=True, slots=True)
class TrainConfig:
    """One training stage: teacher, context teacher, ODE init, Stage 1 DMD or Stage 2 contextual DMD."""

    stage: str = "stage1"
    """"teacher" (bidirectional flow matching on clips), "context-teacher" (continuation with ERFT), "ode-init"
    (regression on teacher ODE pairs), "stage1" (local DMD on 21 frames) or "stage2" (contextual DMD on long
    self-rollouts)."""
    objective: str = "dmd"
    """Stage 1 / 2: "dmd" (DMD with the learned critic) or "regression" (on-policy ODE regression onto the exact
    teacher through prompt schedules, ``objectives.scheduled_regression``; toy world only, settings in ``scenes``).
    Regression in Stage 2 asks the exact long teacher, which sees the student's memory; in Stage 1 the exact short
    teacher, which sees the last ``rollout.target_frames`` frames (the chunk at their end), as the paper's 21-frame
    teacher does. The other stages have one objective each and ignore it."""
    model: str = "toy"
    """Architecture preset of student and critic."""
    teacher: str = "toy"
    """Architecture preset of the frozen teacher (real score), or "exact": the toy world's closed-form teacher."""
    memory: str = "context_forcing"
    """Student memory preset used in rollouts (as at inference); exports carry it (``models.family`` reads it)."""
    memory_tau: float | None = None
    """Surprisal threshold of that memory (None: the preset's, 0.95 for Wan and the toy world, where a cut makes
    consecutive chunks dissimilar)."""
    steps: int = 600
    """Optimiser steps of the critic (the generator steps every ``optim.gen_update_every``)."""
    batch_size: int = 1
    """Prompts per micro-batch."""
    grad_accum: int = 8
    """Micro-batches accumulated per optimiser step (effective batch = batch_size * grad_accum * world size)."""
    guidance: float = 3.0
    """Real-score guidance s in cond + s (cond - uncond): 3 in Stage 1, 5 in Stage 2; the ODE init's teacher's."""
    seed: int = 0
    """Seed of every random draw."""
    data: str = ""
    """Folder written by ``prepare-data``: a latent cache (teacher, context teacher) or a prompt cache (ODE init,
    Stage 1, Stage 2); empty = the toy world."""
    optim: Optimisers = field(default_factory=Optimisers)
    ema: EmaConfig = field(default_factory=EmaConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    teacher_stage: TeacherStageConfig = field(default_factory=TeacherStageConfig)
    ode: OdeConfig = field(default_factory=OdeConfig)
    scenes: ScenesConfig = field(default_factory=ScenesConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage {self.stage!r}; allowed: {', '.join(STAGES)}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective {self.objective!r}; allowed: {', '.join(OBJECTIVES)}")
        _positive(self, "steps", "batch_size", "grad_accum")
        if self.memory not in MEMORY_PRESETS:
            raise ValueError(f"memory preset {self.memory!r}; allowed: {', '.join(sorted(MEMORY_PRESETS))}")
        for name in ("model", "teacher"):
            value = getattr(self, name)
            if value not in MODEL_PRESETS and not (name == "teacher" and value == EXACT_TEACHER):
                raise ValueError(f"{name} preset {value!r}; allowed: {', '.join(sorted(MODEL_PRESETS))}")
        exact_stage = self.stage in ("ode-init", "stage1", "stage2")
        if self.objective == "regression" and not (exact_stage and not self.data and self.teacher == EXACT_TEACHER):
            raise ValueError("objective regression is ODE init (first visits), Stage 1 or Stage 2 on the toy world "
                             "(no data) with teacher 'exact'")
        if self.teacher == EXACT_TEACHER and (self.data or not exact_stage):
            raise ValueError("teacher 'exact' is the toy world's closed-form teacher (ode-init / stage1 / stage2, "
                             "no data)")
        if self.scenes.read_onto == "balanced" and self.batch_size > MAX_BALANCED_GROUP:
            raise ValueError(f"the balanced reading shares pictures out among at most {MAX_BALANCED_GROUP} copies: "
                             f"batch_size must be <= {MAX_BALANCED_GROUP}, got {self.batch_size}")
        r, ct, chunk = self.rollout, self.teacher_stage, self.memory_config().chunk_frames  # memory_config checks tau
        if r.target_frames % chunk or r.frames % chunk:
            raise ValueError(f"rollout frames and target_frames must be whole {chunk}-frame chunks with target <= rollout")
        if self.stage == "stage2" and not r.target_frames <= r.curriculum_start <= r.curriculum_end:
            raise ValueError("stage2 needs target_frames <= curriculum_start <= curriculum_end")
        if self.stage == "context-teacher":
            if ct.context_min % chunk or ct.context_max % chunk:
                raise ValueError(f"context-teacher needs context_min and context_max in whole {chunk}-frame chunks")
            if not self.data and ct.context_max % VISIT_UNIT:
                raise ValueError(f"the toy world's context clips are whole visits: context_max must be a multiple of "
                                 f"{VISIT_UNIT} frames, got {ct.context_max}")
        if self.logging.sample_every and self.data:
            raise ValueError("sample_every writes toy-world sample videos; set it to 0 when training on --data")

    def memory_config(self) -> MemoryConfig:
        """The student's memory: the preset ``memory`` with ``memory_tau`` when set."""
        cfg = memory_preset(self.memory)
        return cfg if self.memory_tau is None else cfg.replace(tau=self.memory_tau)

    def to_json(self) -> str:
        """The resolved configuration, saved beside every run."""
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


LEGACY_KEYS = {
    "generator_optim": "optim.generator", "critic_optim": "optim.critic", "gen_update_every": "optim.gen_update_every",
    "ema_decay": "ema.decay", "ema_start": "ema.start", "ema_warmup": "ema.warmup",
    "rollout_frames": "rollout.frames", "target_frames": "rollout.target_frames",
    "curriculum_start": "rollout.curriculum_start", "curriculum_end": "rollout.curriculum_end",
    "curriculum_ramp_steps": "rollout.curriculum_ramp_steps", "latent_size": "rollout.latent_size",
    "layout": "rollout.layout",
    "timestep_shift": "teacher_stage.timestep_shift", "high_noise_fraction": "teacher_stage.high_noise_fraction",
    "flow_weighting": "teacher_stage.flow_weighting", "text_dropout": "teacher_stage.text_dropout",
    "context_min": "teacher_stage.context_min", "context_max": "teacher_stage.context_max",
    "erft": "teacher_stage.erft",
    "ode_pairs": "ode.pairs", "ode_steps": "ode.steps",
    "scenes_per_video": "scenes.per_video", "scene_visit_units": "scenes.visit_units",
    "scene_min_return_gap": "scenes.min_return_gap", "teacher_forcing_end": "scenes.teacher_forcing_end",
    "read_weight": "scenes.read_weight", "read_onto": "scenes.read_onto", "target_coupling": "scenes.target_coupling",
    "memory_grad": "scenes.memory_grad",
    "device": "runtime.device", "dtype": "runtime.dtype", "fsdp": "runtime.fsdp",
    "gradient_checkpointing": "runtime.gradient_checkpointing",
    "log_every": "logging.log_every", "save_every": "logging.save_every", "sample_every": "logging.sample_every",
    "sample_videos": "logging.sample_videos", "sample_seconds": "logging.sample_seconds",
}
"""Old flat setting (before the sections) -> its dotted place today. ``world`` is gone: a run without data is the
toy world (see :func:`config_from_dict`)."""
RAMP_KEY = "scenes.teacher_forcing_ramp_steps"


def flatten(data: dict, prefix: str = "") -> dict[str, str]:
    """Nested JSON config -> ``{"section.field": text}`` in the form overrides take."""
    out: dict[str, str] = {}
    for k, v in data.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        elif isinstance(v, list):
            out[f"{prefix}{k}"] = ",".join(str(x) for x in v)
        else:
            out[f"{prefix}{k}"] = str(v)
    return out


def config_from_dict(data: dict) -> TrainConfig:
    """The config of a resolved ``config.json``: today's nested layout, or the flat one of runs written before the
    sections. An old config is read as the same run: its keys go to their places (:data:`LEGACY_KEYS`), ``world``
    must be "scenes" where a run was on the toy world (the other toy world was retired; a run with data or a
    non-toy model never read it), and a regression run's teacher-forcing ramp, then half its ``steps``, becomes
    ``scenes.teacher_forcing_ramp_steps``, so the run resumes bit for bit.
    """
    flat = flatten(data)
    if "world" in data and data.get("objective") == "regression" and RAMP_KEY not in flat:
        flat[RAMP_KEY] = repr(max(1.0, 0.5 * float(flat.get("steps", TrainConfig().steps))))
    return apply_overrides(TrainConfig(), flat)


def _place(key: str) -> str:
    """The dotted place of a setting: ``key`` itself, or where an old flat name lives now."""
    head, _, sub = key.partition(".")
    return LEGACY_KEYS[head] + (f".{sub}" if sub else "") if head in LEGACY_KEYS else key


def _check_world(world: str, cfg: TrainConfig) -> None:
    if world != TOY_WORLD and not cfg.data and model_preset(cfg.model).in_channels == model_preset("toy").in_channels:
        raise ValueError(f"world {world!r}: that toy world was retired; a run without data trains on the scene "
                         f"world ({TOY_WORLD!r}), so this run cannot be continued or repeated")


def apply_overrides(cfg: TrainConfig, overrides: dict[str, str]) -> TrainConfig:
    """Return ``cfg`` with ``{"section.field" or "field": text}`` overrides parsed by the field's type, validated
    once, section by section (old flat names are read too, :data:`LEGACY_KEYS`; ``world`` is checked, then dropped).
    """
    overrides = dict(overrides)
    world = overrides.pop("world", None)
    placed: dict[str, str] = {}
    for key, text in overrides.items():
        place = _place(key)
        if place in placed:
            raise ValueError(f"setting {place!r} is given twice (once as {key!r}, an old name of the same setting)")
        placed[place] = text
    out = _apply(cfg, placed, "")
    if world is not None:
        _check_world(world, out)
    return out


def _apply(obj: typing.Any, overrides: dict[str, str], prefix: str) -> typing.Any:
    hints = typing.get_type_hints(type(obj))
    changes: dict[str, typing.Any] = {}
    nested: dict[str, dict[str, str]] = {}
    for key, text in overrides.items():
        head, _, sub = key.partition(".")
        if head not in hints:
            where = f"{prefix[:-1]} has" if prefix else "settings"
            raise ValueError(f"unknown setting {prefix + key!r}; {where}: {', '.join(sorted(hints))}")
        if dataclasses.is_dataclass(hints[head]):
            if not sub:
                fields = ", ".join(f.name for f in dataclasses.fields(hints[head]))
                raise ValueError(f"{prefix + head!r} is a section; set its fields ({fields}) as {prefix + head}.FIELD")
            nested.setdefault(head, {})[sub] = text
        elif sub:
            raise ValueError(f"unknown setting {prefix + key!r}; {prefix + head} is not a section")
        else:
            changes[head] = _parse(text, hints[head], prefix + key)
    for head, sub_overrides in nested.items():
        changes[head] = _apply(getattr(obj, head), sub_overrides, f"{prefix}{head}.")
    return dataclasses.replace(obj, **changes)


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
