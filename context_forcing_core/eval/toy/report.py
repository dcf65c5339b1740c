"""Summary, markdown report and plots of a toy benchmark run (:mod:`context_forcing_core.eval.toy.benchmark`).

Numbers per method are computed per seed (pooling that seed's prompts) and reported as mean +- standard deviation
over seeds. The effective context and the gap buckets use *relative* revisit errors: each video's errors divided by
its own column contrast (the mean difference between random columns of it), so that a flat or blurry video cannot
look consistent just by having little detail; 1 means "as different as unrelated content". One threshold serves
every method: halfway between the ground-truth and the "forgets after 5 s" oracle videos of the same prompts
(:func:`~context_forcing_core.toyworld.metrics.halfway_threshold`; 0.65 in the committed report).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from context_forcing_core.memory.plot import surprisal_plot
from context_forcing_core.toyworld.metrics import (
    RevisitCurve,
    effective_context,
    halfway_threshold,
    pooled_curve,
    rebin,
)
from context_forcing_core.toyworld.viewer import line_plot, revisit_plot
from context_forcing_core.toyworld.world import FRAMES_PER_SECOND

from .benchmark import BenchmarkRun, VideoScore

BUCKETS_S = (0.5, 2.0, 10.0, 20.0, 80.0)
"""Gap buckets of the report's table: short, medium, 10-20 s and above 20 s."""


@dataclass(kw_only=True, slots=True)
class Stat:
    """Mean and spread over seeds."""

    mean: float
    """Mean over seeds (NaN seeds skipped)."""
    std: float
    """Sample standard deviation over seeds (0 with one seed)."""

    @staticmethod
    def of(values: list[float]) -> Stat:
        """Mean and sample std of the finite values (NaN, NaN if none)."""
        v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
        if not len(v):
            return Stat(mean=float("nan"), std=float("nan"))
        return Stat(mean=float(v.mean()), std=float(v.std(ddof=1)) if len(v) > 1 else 0.0)

    def text(self, fmt: str = ".3f") -> str:
        """``mean +- std`` (or ``n/a``)."""
        return "n/a" if not np.isfinite(self.mean) else f"{self.mean:{fmt}} ± {self.std:{fmt}}"


@dataclass(kw_only=True, slots=True)
class MethodSummary:
    """One row of the report."""

    effective_context_s: Stat
    """Effective context (toy seconds) of each seed's pooled relative revisit curve."""
    lower_bound: bool
    """True when no populated gap bin failed for some seed (the value is then a lower bound)."""
    buckets: list[Stat]
    """Relative revisit error per :data:`BUCKETS_S` bucket."""
    long_gap: Stat
    """Revisit error of every revisit after more than 10 s."""
    long_gap_relative: Stat
    """The same over the column contrast (near 1: as different as two random columns)."""
    continuous: Stat
    """Error of columns that stay in view (frame-to-frame coherence)."""
    motion_ok: Stat
    """Fraction of videos passing motion fidelity."""
    shift_residual: Stat
    """Mean cost of the estimated shifts (0: every frame is its predecessor moved rigidly)."""
    shift_residual_relative: Stat
    """The same over the column contrast."""
    palette_change: Stat
    """Late - early palette distance (positive: colours drift away)."""
    sharpness_change: Stat
    """Late - early sharpness (negative: blurs)."""
    frames_per_s: Stat
    """Latent frames generated per second of wall time (NaN for oracle videos)."""


def relative(score: VideoScore) -> RevisitCurve:
    """The video's revisit curve with every error divided by its column contrast."""
    c = score.curve
    return dataclasses.replace(c, error=c.error / score.contrast, errors=c.errors / score.contrast,
                               continuous_error=c.continuous_error / score.contrast)


def pooled_relative(scores: list[VideoScore]) -> RevisitCurve:
    """Relative revisit curves of several videos pooled (every revisit counts once)."""
    return pooled_curve([relative(s) for s in scores])


def summarise(run: BenchmarkRun) -> tuple[float, dict[str, MethodSummary]]:
    """The effective-context threshold and a summary per method."""
    try:
        threshold = halfway_threshold(pooled_relative(run.scores["ground_truth"]),
                                      pooled_relative(run.scores["forgets_5s"]))
    except ValueError:  # videos too short for revisits after 5 s: no threshold, no effective context
        threshold = float("nan")
    out = {}
    for name, scores in run.scores.items():
        per_seed = [[s for s in scores if s.seed == k] for k in range(run.config.seeds)]
        rows = [_seed_row(videos, threshold) for videos in per_seed]
        out[name] = MethodSummary(
            effective_context_s=Stat.of([r["ctx"] for r in rows]),
            lower_bound=any(r["bound"] for r in rows),
            buckets=[Stat.of([r["buckets"][b] for r in rows]) for b in range(len(BUCKETS_S) - 1)],
            **{key: Stat.of([r[key] for r in rows]) for key in (
                "long_gap", "long_gap_relative", "continuous", "motion_ok", "shift_residual",
                "shift_residual_relative", "palette_change", "sharpness_change", "frames_per_s")},
        )
    return threshold, out


def _seed_row(videos: list[VideoScore], threshold: float) -> dict:
    curve = pooled_relative(videos)
    populated = curve.error[curve.populated]
    far = [(s.curve.errors[s.curve.gaps_s > 10.0], s.contrast) for s in videos]
    made, secs = sum(s.frames for s in videos), sum(s.seconds for s in videos)
    long_all = np.concatenate([e for e, _ in far])
    return {
        "ctx": effective_context(curve, threshold) if threshold > 0 else float("nan"),
        "bound": bool(len(populated)) and bool(np.all(populated < threshold)),
        "buckets": list(rebin(curve, BUCKETS_S).error),
        "long_gap": float(long_all.mean()) if len(long_all) else float("nan"),
        "long_gap_relative": float(np.mean([e.mean() / c for e, c in far if len(e)])) if len(long_all) else np.nan,
        "continuous": pooled_curve([s.curve for s in videos]).continuous_error,
        "motion_ok": float(np.mean([s.motion.ok for s in videos])),
        "shift_residual": float(np.mean([s.motion.shift_residual for s in videos])),
        "shift_residual_relative": float(np.mean([s.motion.shift_residual / s.contrast for s in videos])),
        "palette_change": float(np.mean([s.drift.palette_distance_change for s in videos])),
        "sharpness_change": float(np.mean([s.drift.sharpness_change for s in videos])),
        "frames_per_s": made / secs if secs > 0 else float("nan"),
    }


def _rel(path: Path) -> str:
    """The path relative to the working directory when inside it (the report does not name the machine's folders)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _checkpoint(path: Path) -> str:
    """The path and the start of its sha256."""
    sha = hashlib.sha256(path.read_bytes()).hexdigest()[:12] if path.is_file() else "missing"
    return f"`{_rel(path)}` (sha256 {sha}...)"


def headline_table(run: BenchmarkRun, summary: dict[str, MethodSummary]) -> str:
    """The markdown table of the README: effective context, long-gap revisits, motion, drift, speed."""
    lines = ["| method | effective context (s) | revisit > 10 s (rel.) | continuous | motion ok | shift residual "
             "(rel.) | palette drift | latent frames / s |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for m in run.methods:
        s = summary[m.name]
        ctx = ("≥ " if s.lower_bound else "") + s.effective_context_s.text(".1f")
        lines.append(f"| {m.label} | {ctx} | {s.long_gap.text()} ({s.long_gap_relative.mean:.2f}) | "
                     f"{s.continuous.text()} | {s.motion_ok.text('.2f')} | {s.shift_residual.text()} "
                     f"({s.shift_residual_relative.mean:.2f}) | {s.palette_change.text()} | "
                     f"{s.frames_per_s.text('.1f')} |")
    return "\n".join(lines)


def _bucket_table(run: BenchmarkRun, summary: dict[str, MethodSummary]) -> str:
    names = [f"{a:g}-{b:g} s" for a, b in zip(BUCKETS_S[:-1], BUCKETS_S[1:])]
    lines = ["| method | " + " | ".join(names) + " | sharpness drift |", "| --- |" + " --- |" * (len(names) + 1)]
    for m in run.methods:
        s = summary[m.name]
        lines.append(f"| {m.label} | " + " | ".join(b.text() for b in s.buckets) + f" | {s.sharpness_change.text()} |")
    return "\n".join(lines)


def write_report(run: BenchmarkRun, out: Path, command: str) -> Path:
    """Write ``report.md``, ``results.json`` and the PNG plots into ``out``; returns the report's path."""
    out.mkdir(parents=True, exist_ok=True)
    threshold, summary = summarise(run)
    cfg = run.config
    curves = {m.name: pooled_relative(run.scores[m.name]) for m in run.methods}
    labels = {m.name: m.label for m in run.methods}
    students = [m.name for m in run.methods if m.group != "teacher"]
    teachers = ["ground_truth", "forgets_5s"] + [m.name for m in run.methods if m.group == "teacher"]
    y_label = "relative revisit error (revisit error / the video's column contrast)"
    for names, file in ((students, "revisit_vs_gap.png"), (teachers, "revisit_vs_gap_teachers.png")):
        revisit_plot({labels[n]: curves[n] for n in names}, threshold, size=(900, 420), y_label=y_label).save(out / file)
    series = {}
    for m in run.methods:
        if m.name in ("cf_tail", "forgets_5s"):  # the same videos as "cf"; the same palette as ground truth
            continue
        pal = np.mean([s.drift.palette_distance for s in run.scores[m.name]], axis=0)  # (F scored,)
        t0 = m.scored_from_s
        t = t0 + np.arange(len(pal)) / FRAMES_PER_SECOND
        k = 2 * FRAMES_PER_SECOND  # 2-s moving average
        series[m.label] = (t[k - 1:], np.convolve(pal, np.ones(k) / k, mode="valid"))
    ticks = np.arange(0, cfg.seconds + 1e-9, 10 if cfg.seconds >= 30 else 2)
    line_plot(series, x_label="time (toy seconds)", y_label="distance to the prompt's palette (2-s mean; drift)",
              x_ticks=ticks, size=(900, 420)).save(out / "drift_over_time.png")
    if run.trace is not None:
        surprisal_plot(run.trace, 0).save(out / "memory_timeline.png")
    results = {
        "command": command,
        "config": {k: _rel(v) if isinstance(v := getattr(cfg, k), Path) else str(v) for k in cfg.__slots__},
        "threshold": threshold,
        "methods": {m.name: {"label": m.label, "group": m.group, **_as_json(summary[m.name])} for m in run.methods},
        "videos": {n: [{"prompt": s.prompt, "seed": s.seed, "effective_context_s": effective_context(relative(s), threshold)
                        if threshold > 0 else None,
                        "motion_ok": s.motion.ok, "shift_residual": s.motion.shift_residual, "frames": s.frames,
                        "seconds": s.seconds} for s in v] for n, v in run.scores.items()},
        "wall_s": run.extra.get("wall_s"),
    }
    (out / "results.json").write_text(json.dumps(results, indent=1, default=float))
    checkpoints = "\n".join(f"- {k}: {_checkpoint(Path(getattr(cfg, k)))}"
                            for k in ("student", "stage1", "context_teacher", "context_teacher_no_erft"))
    text = f"""# Toy-world benchmark of memory policies

Regenerate: `{command}` ({run.extra.get('wall_s', float('nan')) / 60:.1f} min on this machine: {platform.machine()},
{torch.get_num_threads()} torch threads, torch {torch.__version__}).

{cfg.prompts} held-out prompts (toy dataset seed {cfg.prompt_seed}) x {cfg.seeds} seeds, {cfg.seconds:g}-s videos
({cfg.frames} latent frames), generated one at a time in float32. Values are mean ± standard deviation over seeds
(each seed pools its prompts). The context teachers ({cfg.teacher_steps} Euler steps, guidance {cfg.guidance:g})
continue the CF student's own videos after {cfg.teacher_context_s:g} s and are scored on what they made, beside
the CF student scored on the same frames.

Checkpoints:
{checkpoints}

## Headline

{headline_table(run, summary)}

- **effective context**: the lower edge of the first gap bin whose *relative* revisit error (revisit error over
  the video's column contrast, the mean difference between random columns of it) reaches the threshold
  {threshold:.3f} (halfway between ground truth and the "forgets after 5 s" oracle); "≥" marks a lower bound (no
  bin failed for some seed). Relative errors keep a flat or blurry video from looking consistent for lack of detail.
- **revisit > 10 s**: mean |RGB difference| (0..1) between what a video shows when the camera comes back after more
  than 10 s and what it showed there before; in brackets over the video's column contrast (1 = as different as two
  random columns).
- **shift residual**: how far each frame is from its predecessor moved rigidly (0 for a camera pan). Revisits are
  found on a canvas stitched from the estimated shifts, so when it is large (relative value near 1) the frames do not
  follow a camera path and the revisit figures say little about memory.
- **palette drift**: late minus early (15 % of the frames each) distance to the prompt's palette.

## Relative revisit error per gap bucket

{_bucket_table(run, summary)}

## Plots

![revisit error vs gap](revisit_vs_gap.png)

![revisit error vs gap, context teachers](revisit_vs_gap_teachers.png)

![drift over time](drift_over_time.png)

Memory timeline of the CF student's first video (layer 0; the Surprisal Inspector node draws the same plot):

![memory timeline](memory_timeline.png)
"""
    (out / "report.md").write_text(text)
    return out / "report.md"


def _as_json(s: MethodSummary) -> dict:
    def one(v: Stat) -> dict:
        return {"mean": v.mean, "std": v.std}

    return {k: ([one(b) for b in v] if isinstance(v, list) else one(v) if isinstance(v, Stat) else v)
            for k, v in ((f, getattr(s, f)) for f in s.__slots__)}
