"""Scene-world memory benchmark: one student under every memory policy on held-out visit schedules, beside the oracles.

    python -m training.run eval --preset scene-benchmark --student FILE [--schedules 6] [--seeds 3] [--seconds 60]
        [--out results/scene-benchmark]

Schedules come from ``random_schedule(default_rng(HELD_OUT_BASE + i))``; training draws its schedules from generators
seeded by 62-bit integers of the run's torch generator, never from these. Per video the oracle
(``toyworld.visit_metrics``) scores returns of non-sink scenes; per seed the returns of all schedules are pooled into
one revisit curve, and effective context and recall are reported as mean +- std over seeds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from context_forcing_core.atomic import write_atomic
from context_forcing_core.memory.config import MemoryConfig, memory_preset
from context_forcing_core.models.loading import load_model
from context_forcing_core.toyworld.constants import FRAMES_PER_SECOND
from context_forcing_core.toyworld.metrics import effective_context, pooled_curve
from context_forcing_core.toyworld.scene_rollout import video_of
from context_forcing_core.toyworld.scenes import (
    VISIT_UNIT,
    forgetting_schedule,
    random_schedule,
    render_schedule,
)
from context_forcing_core.toyworld.viewer import line_plot
from context_forcing_core.toyworld.visit_metrics import RECALL_THRESHOLD, SceneReport, chance_recall, scene_report

HELD_OUT_BASE = 10_000
"""Seed of the first held-out schedule."""
LONG_GAP_S = 10.0
"""Returns at least this far apart count as long-gap returns."""


def memories(tau: float | None = None) -> dict[str, MemoryConfig]:
    """The memory policies compared, by row name (the student's own is ``context_forcing``, at ``tau`` when given,
    else at the preset's surprisal threshold).
    """
    cf = memory_preset("context_forcing")
    cf = cf if tau is None else cf.replace(tau=tau)
    return {"context_forcing": cf, "self_forcing": memory_preset("self_forcing"), "longlive": memory_preset("longlive"),
            "infinity_rope": memory_preset("infinity_rope"), "uniform slow, every chunk": cf.replace(
                slow_select="uniform", consolidate_every=1), "uniform slow, every 2 chunks": cf.replace(
                slow_select="uniform", consolidate_every=2), "absolute positions": cf.replace(positions="absolute")}


@dataclass(kw_only=True, slots=True)
class Row:
    """One method's reports: ``reports[seed][schedule]``, and its generation seconds."""

    name: str
    reports: list[list[SceneReport]]
    seconds: float = 0.0
    similarity_cut: list[float] = field(default_factory=list)
    """Key similarity of checked chunks that start a visit (every layer), for the surprisal threshold."""
    similarity_inside: list[float] = field(default_factory=list)
    """The same for checked chunks inside a visit."""
    consolidated_cut: list[bool] = field(default_factory=list)
    consolidated_inside: list[bool] = field(default_factory=list)


def _summary(row: Row) -> dict[str, object]:
    eff, rec_long, rel_long, within, libd, pal, cut, sink = [], [], [], [], [], [], [], []
    for per_seed in row.reports:
        curve = pooled_curve([r.curve for r in per_seed])
        eff.append(effective_context(curve, RECALL_THRESHOLD))
        long = [x for r in per_seed for x in r.returns if not x.sink and x.gap_s >= LONG_GAP_S]
        rec_long.append(np.mean([x.recalled for x in long]) if long else np.nan)
        rel_long.append(np.mean([x.relative for x in long]) if long else np.nan)
        within.append(np.mean([r.within_visit_change for r in per_seed]))
        libd.append(np.mean([r.library_distance for r in per_seed]))
        pal.append(np.mean([r.palette_distance for r in per_seed]))
        cut.append(np.mean([r.cut_palette_distance for r in per_seed]))
        sink.append(np.nanmean([r.sink_relative for r in per_seed]))
    pooled = pooled_curve([r.curve for s in row.reports for r in s])
    frames = sum(len(r.curve.errors) for s in row.reports for r in s)

    def ms(v: list[float]) -> list[float]:
        return [float(np.nanmean(v)), float(np.nanstd(v))]

    def pct(v: list[float]) -> list[float]:
        return np.percentile(v, [5, 50, 95]).tolist() if v else []

    def share(v: list[bool]) -> float:
        return float(np.mean(v)) if v else float("nan")

    return {"similarity_cut_p5_50_95": pct(row.similarity_cut), "similarity_inside_p5_50_95": pct(row.similarity_inside),
            "consolidated_cut": share(row.consolidated_cut), "consolidated_inside": share(row.consolidated_inside),
            "effective_context_s": ms(eff), "recall_long": ms(rec_long), "relative_long": ms(rel_long),
            "within_visit_change": ms(within), "library_distance": ms(libd), "palette_distance": ms(pal),
            "cut_palette_distance": ms(cut), "sink_relative": ms(sink), "bin_edges_s": pooled.bin_edges_s.tolist(),
            "relative_by_gap": pooled.error.tolist(), "count_by_gap": pooled.count.tolist(), "returns": frames,
            "seconds": row.seconds}


def run(student: Path, *, schedules: int = 6, seeds: int = 3, seconds: float = 60.0, tau: float | None = None,
        only: tuple[str, ...] = (), log: Callable[[str], None] = print) -> dict[str, dict[str, object]]:
    """Every row's summary (see :func:`_summary`), oracles first."""
    frames = int(round(seconds * FRAMES_PER_SECOND / VISIT_UNIT)) * VISIT_UNIT
    scheds = [random_schedule(np.random.default_rng(HELD_OUT_BASE + i), num_frames=frames) for i in range(schedules)]
    truth = [scene_report(render_schedule(s), s) for s in scheds]
    forget = [scene_report(render_schedule(forgetting_schedule(s, 5.0)), s) for s in scheds]
    rows = [Row(name="ground truth (oracle)", reports=[truth] * seeds),
            Row(name="forgets after 5 s (oracle)", reports=[forget] * seeds)]
    model = load_model(student).eval()
    mems = {k: v for k, v in memories(tau).items() if not only or k in only}
    students = {name: Row(name=f"student, {name}", reports=[[] for _ in range(seeds)]) for name in mems}
    for i, s in enumerate(scheds):  # videos outer, methods inner: machine-speed drift hits every method alike
        for seed in range(seeds):
            for name, mem in mems.items():
                start = time.perf_counter()
                video, gen = video_of(model, [s], memory=mem, seed=1000 * i + seed)
                row = students[name]
                row.seconds += time.perf_counter() - start
                row.reports[seed].append(scene_report(video[0], s))
                cuts = {v.start // mem.chunk_frames for v in s.visits[1:]}
                for step in gen.trace.chunks:
                    for layer in step.layers:
                        if layer.checked and layer.similarity is not None:
                            at_cut = step.chunk in cuts
                            (row.similarity_cut if at_cut else row.similarity_inside).append(layer.similarity)
                            (row.consolidated_cut if at_cut else row.consolidated_inside).append(layer.consolidated)
        log(f"schedule {i + 1}/{schedules} done")
    rows += list(students.values())
    return {r.name: _summary(r) for r in rows}


def _fmt(v: list[float], digits: int = 2) -> str:
    return "n/a" if not np.isfinite(v[0]) else f"{v[0]:.{digits}f} ± {v[1]:.{digits}f}"


def table(summary: dict[str, dict[str, object]]) -> str:
    """The headline table in Markdown."""
    lines = ["| method | effective context (s) | recall, gaps >= 10 s | revisit > 10 s (rel.) | within-visit change "
             "| library distance | palette distance | sink return (rel.) |", "|" + " --- |" * 8]
    for name, s in summary.items():
        lines.append(f"| {name} | {_fmt(s['effective_context_s'], 1)} | {_fmt(s['recall_long'])} | "
                     f"{_fmt(s['relative_long'])} | {_fmt(s['within_visit_change'], 3)} | "
                     f"{_fmt(s['library_distance'], 3)} | {_fmt(s['palette_distance'], 3)} | "
                     f"{_fmt(s['sink_relative'])} |")
    lines.append(f"\nChance recall: {chance_recall():.2f}; threshold {RECALL_THRESHOLD} (relative).\n")
    for name, s in summary.items():
        if s.get("similarity_cut_p5_50_95"):
            cut, inside = s["similarity_cut_p5_50_95"], s["similarity_inside_p5_50_95"]
            lines.append(f"- {name}: key similarity of checked chunks at cuts (5/50/95 %) "
                         f"{', '.join(f'{v:.3f}' for v in cut)}, inside visits "
                         f"{', '.join(f'{v:.3f}' for v in inside)}; consolidated at cuts "
                         f"{s['consolidated_cut']:.0%}, inside {s['consolidated_inside']:.0%}")
    return "\n".join(lines)


def write(summary: dict[str, dict[str, object]], out: Path, command: str) -> Path:
    """results.json, revisit_vs_gap.png and report.md in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "results.json", json.dumps(summary, indent=2))
    series = {}
    for name, s in summary.items():
        edges = np.asarray(s["bin_edges_s"])
        series[name] = (np.sqrt(edges[:-1] * edges[1:]), np.asarray(s["relative_by_gap"], dtype=float))
    if any(np.isfinite(y).any() for _, y in series.values()):
        plot = line_plot(series, x_label="gap (toy s, bin centres)", y_label="relative revisit error", log_x=True,
                         x_ticks=edges, threshold=RECALL_THRESHOLD, markers=True)
        write_atomic(out / "revisit_vs_gap.png", lambda tmp: plot.save(tmp, format="PNG"))
    return write_atomic(out / "report.md", f"# Scene-world memory benchmark\n\n`{command}`\n\n{table(summary)}\n\n"
                        "![relative revisit error by gap](revisit_vs_gap.png)\n")
