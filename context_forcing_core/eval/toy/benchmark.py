"""Toy-world benchmark: the Context Forcing student, its ablations, the Stage-1 student under every baseline memory,
and the context teachers, scored by the toy world's oracle metrics (method.md section 6, issue "Evaluation").

    python -m training.run eval --preset toy-benchmark [--out results/toy-benchmark] [--prompts 6] [--seeds 3]
        [--seconds 60] [--teacher-context 18] [--methods cf,stage1_self_forcing,...]

Every method generates the same held-out prompts with the same seeds, one video at a time (each video makes its own
consolidation decisions, as for an artist), in float32 on this machine's CPU; for each video every method runs in
turn, so the throughput figures are measured side by side. The context teachers continue the
Context Forcing student's own videos after ``teacher_context_s`` seconds and are scored on the frames they made.
:mod:`context_forcing_core.eval.toy.report` writes the report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from context_forcing_core.diffusion.sampler import generate
from context_forcing_core.memory.config import MemoryConfig, memory_preset
from context_forcing_core.memory.trace import MemoryTrace
from context_forcing_core.models.loading import load_model
from context_forcing_core.objectives.context_teacher import ContextLayout
from context_forcing_core.objectives.continuation import continue_with_teacher
from context_forcing_core.student import TOY_MEMORY_TAU
from context_forcing_core.toyworld.camera import camera_path, render_video
from context_forcing_core.toyworld.dataset import ToyClipDataset
from context_forcing_core.toyworld.metrics import (
    Drift,
    MotionFidelity,
    RevisitCurve,
    column_contrast,
    drift,
    motion_fidelity,
    revisit_curve,
)
from context_forcing_core.toyworld.synthetic import forgetting_video
from context_forcing_core.toyworld.world import FRAMES_PER_SECOND, render_panorama

ASSETS = Path(__file__).resolve().parent / "assets"
"""The toy benchmarks' checkpoints (see assets/README.md)."""
ModelName = Literal["student", "stage1", "context_teacher", "context_teacher_no_erft", "ground_truth", "forgets_5s"]


@dataclass(kw_only=True, slots=True, frozen=True)
class Method:
    """One row of the benchmark: a model and how it keeps context."""

    name: str
    """Short id (``--methods``)."""
    label: str
    """Row label of the report."""
    model: ModelName
    """Which checkpoint generates (or which oracle video: ground truth, forgetting after 5 s)."""
    group: str
    """Report section: reference, ours, ablation, baseline, teacher."""
    memory: MemoryConfig | None = None
    """Student memory (None for teachers and oracle videos)."""
    scored_from_s: float = 0.0
    """Metrics count frames from this time on (the teachers' continuation; earlier frames are their context)."""


def _cf(**changes: object) -> MemoryConfig:
    return memory_preset("context_forcing").replace(tau=TOY_MEMORY_TAU, **changes)


def methods(teacher_context_s: float) -> list[Method]:
    """The benchmark's rows in report order (the toy students' surprisal threshold is ``TOY_MEMORY_TAU``)."""
    teacher = {"group": "teacher", "scored_from_s": teacher_context_s}
    return [
        Method(name="ground_truth", label="ground truth (oracle)", model="ground_truth", group="reference"),
        Method(name="forgets_5s", label="forgets after 5 s (oracle)", model="forgets_5s", group="reference"),
        Method(name="cf", label="CF student, context_forcing", model="student", group="ours", memory=_cf()),
        Method(name="cf_absolute", label="CF student, absolute positions", model="student", group="ablation",
               memory=_cf(positions="absolute")),
        Method(name="cf_uniform1", label="CF student, uniform slow (every chunk)", model="student", group="ablation",
               memory=_cf(slow_select="uniform", consolidate_every=1)),
        Method(name="cf_uniform2", label="CF student, uniform slow (every 2 chunks)", model="student",
               group="ablation", memory=_cf(slow_select="uniform", consolidate_every=2)),
        Method(name="stage1_cf", label="Stage-1 student, context_forcing", model="stage1", group="ablation",
               memory=_cf()),
        *(Method(name=f"stage1_{p}", label=f"Stage-1 student, {p}", model="stage1", group="baseline",
                 memory=memory_preset(p)) for p in ("self_forcing", "longlive", "infinity_rope")),
        Method(name="cf_tail", label=f"CF student, scored after {teacher_context_s:g} s", model="student",
               memory=_cf(), **teacher),
        Method(name="teacher_erft", label="context teacher, error recycling", model="context_teacher", **teacher),
        Method(name="teacher_plain", label="context teacher, no error recycling", model="context_teacher_no_erft",
               **teacher),
    ]


@dataclass(kw_only=True, slots=True, frozen=True)
class BenchmarkConfig:
    """What the benchmark generates and with which checkpoints."""

    prompts: int = 6
    """Held-out prompts (drawn from the toy world with ``prompt_seed``)."""
    seeds: int = 3
    """Generation seeds per prompt; spreads are over seeds."""
    seconds: float = 60.0
    """Video length in toy seconds (4 latent frames each)."""
    prompt_seed: int = 30_000
    """Dataset seed of the prompts (the training data uses other seeds)."""
    teacher_context_s: float = 18.0
    """Student-generated seconds the context teachers continue."""
    teacher_steps: int = 24
    """Euler steps per teacher window."""
    guidance: float = 3.0
    """Teacher classifier-free guidance."""
    student: Path = ASSETS / "pan_stage2_student.safetensors"
    """The Context Forcing student (Stage 2) of the panning world (the bundled student is the scene world's)."""
    stage1: Path = ASSETS / "toy_stage1_student.safetensors"
    """The Stage-1 student it was distilled from."""
    context_teacher: Path = ASSETS / "toy_context_teacher.safetensors"
    """The context teacher of Stage 2 (ERFT)."""
    context_teacher_no_erft: Path = ASSETS / "toy_context_teacher_no_erft.safetensors"
    """The same fine-tuning without error injection (``--erft.clean_prob 1``)."""
    only: tuple[str, ...] = ()
    """Method names to run (empty: all). The oracle rows always run (they set the threshold), and ``cf`` runs when a
    teacher row does (the teachers continue its videos)."""

    def __post_init__(self) -> None:
        if self.prompts < 1 or self.seeds < 1:
            raise ValueError(f"prompts and seeds must be positive, got {self.prompts} and {self.seeds}")
        frames = self.frames
        ctx = round(self.teacher_context_s * FRAMES_PER_SECOND)
        if frames < 6 or not 0 < ctx < frames:
            raise ValueError(f"seconds ({self.seconds}) must give at least 6 latent frames and teacher_context_s "
                             f"({self.teacher_context_s}) must lie strictly inside the video")
        known = {m.name for m in methods(self.teacher_context_s)}
        if unknown := set(self.only) - known:
            raise ValueError(f"unknown methods {sorted(unknown)}; allowed: {', '.join(sorted(known))}")

    @property
    def frames(self) -> int:
        """Latent (= RGB) frames per video, a multiple of the 3-frame chunk."""
        return int(round(self.seconds * FRAMES_PER_SECOND / 3)) * 3


@dataclass(kw_only=True, slots=True)
class VideoScore:
    """The oracle metrics of one video."""

    prompt: int
    """Prompt index."""
    seed: int
    """Generation seed."""
    curve: RevisitCurve
    """Revisit error vs gap (revisits after ``scored_from_s``)."""
    motion: MotionFidelity
    """Camera motion against the prompt's trajectory (scored frames)."""
    drift: Drift
    """Palette distance and sharpness over time (scored frames)."""
    contrast: float
    """Column contrast of the scored frames (scale of "different content")."""
    frames: int
    """Frames this method generated for the video."""
    seconds: float
    """Generation wall time (0 for oracle videos)."""


@dataclass(kw_only=True, slots=True)
class BenchmarkRun:
    """Everything the report needs."""

    config: BenchmarkConfig
    """What ran."""
    methods: list[Method]
    """The rows, in report order."""
    scores: dict[str, list[VideoScore]]
    """Method name -> its videos (prompt-major, then seed)."""
    prompts: list[str]
    """Prompt texts."""
    trace: MemoryTrace | None = None
    """Memory trace of the CF student's first video (the report's memory timeline)."""
    extra: dict[str, float] = field(default_factory=dict)
    """Wall time of the whole run etc."""


def _score(frames: np.ndarray, offsets: np.ndarray, palette: str, start: int, rng: np.random.Generator) -> tuple:
    """Revisit curve from ``start`` on, motion, drift and contrast of the frames from ``start`` on."""
    tail = frames[start:]
    return (revisit_curve(frames, from_frame=start), motion_fidelity(tail, offsets[start:]),
            drift(tail, palette), max(column_contrast(tail, rng), 1e-6))


def run_benchmark(cfg: BenchmarkConfig, log: Callable[[str], None] = print) -> BenchmarkRun:
    """Generate and score every method's videos (see the module docstring)."""
    every = methods(cfg.teacher_context_s)
    rows = [m for m in every if m.group == "reference" or not cfg.only or m.name in cfg.only]
    cf = next(m for m in every if m.name == "cf")
    order = list(dict.fromkeys(([cf] if any(m.group == "teacher" for m in rows) else []) + rows))
    data = ToyClipDataset(cfg.prompts, num_latent_frames=cfg.frames, seed=cfg.prompt_seed)
    specs = [data.spec(i) for i in range(cfg.prompts)]
    texts = [data.encoder.encode([p.text]) for p, _, _ in specs]  # (1, 16, 4096) each
    uncond = data.encoder.encode([""])
    paths = {"student": cfg.student, "stage1": cfg.stage1, "context_teacher": cfg.context_teacher,
             "context_teacher_no_erft": cfg.context_teacher_no_erft}
    models = {}
    cf_videos: dict[tuple[int, int], tuple[torch.Tensor, float]] = {}  # (prompt, seed) -> CF latents, seconds
    run = BenchmarkRun(config=cfg, methods=rows, scores={}, prompts=[p.text for p, _, _ in specs])

    def produce(method: Method, i: int, seed: int, offsets: np.ndarray) -> tuple[np.ndarray, int, float]:
        """(F, 3, 32, 32) frames, frames generated, generation seconds."""
        scene, start = specs[i][1], round(method.scored_from_s * FRAMES_PER_SECOND)
        if method.model in ("ground_truth", "forgets_5s"):
            pano = render_panorama(scene)
            oracle = method.model == "ground_truth"
            return (render_video(pano, offsets) if oracle else forgetting_video(pano, offsets, 5.0, seed=seed)), 0, 0.0
        g0 = time.perf_counter()
        made = cfg.frames
        if method.memory is None:  # a context teacher continues the CF student's video
            ctx = cf_videos[(i, seed)][0][:, :, :start]
            cont = continue_with_teacher(models[method.model], ctx, texts[i], uncond, num_frames=cfg.frames - start,
                                         layout=ContextLayout(), num_steps=cfg.teacher_steps, guidance=cfg.guidance,
                                         generator=torch.Generator().manual_seed(seed))
            latents, seconds, made = torch.cat([ctx, cont], dim=2), time.perf_counter() - g0, cfg.frames - start
        elif method.model == "student" and method.memory == cf.memory and (i, seed) in cf_videos:
            latents, seconds = cf_videos[(i, seed)]  # the same generation (e.g. scored from a later frame)
        else:
            out = generate(models[method.model], texts[i], num_latent_frames=cfg.frames, memory=method.memory,
                           seed=seed, latent_size=(8, 8))
            latents, seconds = out.latents, time.perf_counter() - g0
            if method.name == "cf":
                cf_videos[(i, seed)] = (latents, seconds)
                run.trace = run.trace or out.trace
        return data.codec.decode(latents).clamp(0, 1)[0].numpy(), made, seconds

    start_all = time.perf_counter()
    for method in order:
        if method.model in paths and method.model not in models:
            models[method.model] = load_model(paths[method.model], dtype=torch.float32).eval()
        run.scores[method.name] = []
    # Videos outer, methods inner: a change of machine speed during the run slows every method alike, so the
    # throughput ratios stay side by side (the CF student runs first, the teachers continue its video).
    for k, (i, seed) in enumerate((i, seed) for i in range(cfg.prompts) for seed in range(cfg.seeds)):
        t0 = time.perf_counter()
        prompt, scene, camera = specs[i]
        offsets = camera_path(camera, cfg.frames, scene.width)
        for method in order:
            start = round(method.scored_from_s * FRAMES_PER_SECOND)
            frames, made, seconds = produce(method, i, seed, offsets)
            curve, motion, dr, contrast = _score(frames, offsets, prompt.palette, start, np.random.default_rng(seed))
            run.scores[method.name].append(VideoScore(prompt=i, seed=seed, curve=curve, motion=motion, drift=dr,
                                                      contrast=contrast, frames=made, seconds=seconds))
        log(f"[{k + 1}/{cfg.prompts * cfg.seeds}] prompt {i} seed {seed}: {len(order)} rows, "
            f"{time.perf_counter() - t0:.1f} s")
    run.scores = {m.name: run.scores[m.name] for m in rows}
    run.extra["wall_s"] = time.perf_counter() - start_all
    return run
