"""Teachers as continuers on the scene world: given the video so far, does a teacher show a returning scene as it was?

    python -m context_forcing_core.eval.toy.scene_continuers --teacher NAME=FILE [--teacher ...] [--student FILE]
        [--schedules 6] [--seeds 3] [--out results/scene-continuers]

For every return of a non-sink scene in the scene benchmark's held-out schedules (``scene_benchmark.HELD_OUT_BASE``),
each teacher continues the video before the return with the return's first visit unit (``VISIT_UNIT`` latent
frames, the scene context teacher's target) under the return's prompt, seeing the context laid out like the
student's memory (``ContextLayout``, the layout the context teachers are trained with). The context is the ground
truth, or the student's own video of the schedule (``context_forcing`` memory, the scene benchmark's seeds): its
drift is what error recycling is meant to withstand.

Scored per return against the previous visit of its scene *in the context* (so with the student's context, what the
student showed): recall (the first generated frame's nearest library picture is the previous visit's last frame's),
relative revisit error (first chunk against the previous visit's last chunk, over the prompt's wrong-pick error, as
``toyworld.visit_metrics``), and library distance of the generated frames. Rows: the exact long teacher, the exact
short teacher (no context: recall at chance, the control), each learned teacher. Mean +- std over seeds.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from context_forcing_core.atomic import write_atomic
from context_forcing_core.memory.config import memory_preset
from context_forcing_core.models.loading import load_model
from context_forcing_core.models.wan import WanModel
from context_forcing_core.objectives.context_teacher import ContextLayout, context_indices
from context_forcing_core.objectives.continuation import continue_with_teacher
from context_forcing_core.toyworld.codec import ToyCodec
from context_forcing_core.toyworld.constants import FRAMES_PER_SECOND
from context_forcing_core.toyworld.exact_teacher import ExactTeacher, exact_sample
from context_forcing_core.toyworld.metrics import bin_by_gap
from context_forcing_core.toyworld.scene_rollout import encoder_for, video_of
from context_forcing_core.toyworld.scenes import (
    VISIT_UNIT,
    Visit,
    library,
    random_schedule,
    schedule_latents,
)
from context_forcing_core.toyworld.viewer import line_plot
from context_forcing_core.toyworld.visit_metrics import (
    COMPARED_FRAMES,
    SCENE_BIN_EDGES_S,
    chance_recall,
    nearest_picture,
    wrong_pick_error,
)

from .scene_benchmark import HELD_OUT_BASE, LONG_GAP_S

LEARNED_STEPS = 24
"""Euler steps of a learned teacher's continuation."""
LEARNED_GUIDANCE = 3.0
"""Classifier-free guidance of a learned teacher."""


@dataclass(kw_only=True, slots=True, frozen=True)
class Continuation:
    """One teacher's continuation of one return."""

    gap_s: float
    recalled: bool
    relative: float
    library_distance: float


def score(frames: np.ndarray, context: np.ndarray, ret: Visit, prev: Visit) -> Continuation:
    """Score generated RGB ``frames`` (n, 3, H, W) of ``ret`` against the ``context`` video's (T, 3, H, W) frames of
    the previous visit ``prev``.
    """
    m = min(COMPARED_FRAMES, len(frames), prev.stop - prev.start)
    now, then = frames[:m], context[prev.stop - m:prev.stop]
    lib_d = np.abs(frames[:, None] - library(ret.prompt)[None]).mean(axis=(2, 3, 4)).min(1).mean()
    return Continuation(gap_s=(ret.start - prev.stop) / FRAMES_PER_SECOND,
                        recalled=nearest_picture(now[0], ret.prompt) == nearest_picture(then[-1], ret.prompt),
                        relative=float(np.abs(now - then).mean()) / wrong_pick_error(ret.prompt),
                        library_distance=float(lib_d))


def continue_exact(teacher: ExactTeacher, context: Tensor, text: Tensor, *, num_frames: int, layout: ContextLayout,
                   use_context: bool, generator: torch.Generator) -> Tensor:
    """(B, C, num_frames, H, W) exact-teacher continuation of ``context`` (B, C, F, H, W) seen through ``layout``."""
    ctx = context[:, :, context_indices(context.shape[2], layout)] if use_context else None
    return exact_sample(teacher, text, num_frames=num_frames, context=ctx, generator=generator)


def run(teachers: dict[str, WanModel], *, student: WanModel | None, schedules: int = 6, seeds: int = 3,
        seconds: float = 60.0, log=print) -> dict[str, dict[str, object]]:
    """Every row's continuations, keyed ``"teacher | context"``: ``{"seeds": [[Continuation, ...] per seed]}``."""
    frames = int(round(seconds * FRAMES_PER_SECOND / VISIT_UNIT)) * VISIT_UNIT
    scheds = [random_schedule(np.random.default_rng(HELD_OUT_BASE + i), num_frames=frames) for i in range(schedules)]
    layout = ContextLayout(target=VISIT_UNIT)
    exact = ExactTeacher()
    codec = ToyCodec()
    contexts = ["ground truth"] + (["student"] if student is not None else [])
    names = ["exact long teacher", "exact short teacher (no context)", *teachers]
    rows: dict[str, list[list[Continuation]]] = {f"{n} | {c}": [[] for _ in range(seeds)] for c in contexts
                                                 for n in names}
    encoders = {name: encoder_for(model) for name, model in teachers.items()}
    uncond = {name: enc.encode([""]) for name, enc in encoders.items()}
    student_memory = memory_preset("context_forcing")  # the scene benchmark's student row
    for i, s in enumerate(scheds):
        cases = s.returns(sink=False)
        for seed in range(seeds):
            videos = {"ground truth": schedule_latents(s)[None]}  # (1, C, T, H, W)
            if student is not None:
                videos["student"] = video_of(student, [s], memory=student_memory,
                                             seed=1000 * i + seed)[1].latents.float().cpu()
            for source, latents in videos.items():
                rgb = codec.decode(latents).clamp(0, 1)[0].numpy()  # (T, 3, 32, 32)
                for k, (ret, prev) in enumerate(cases):
                    ctx = latents[:, :, :ret.start]
                    n = min(VISIT_UNIT, ret.stop - ret.start)
                    made: dict[str, Tensor] = {}
                    for use, name in ((True, names[0]), (False, names[1])):
                        gen = torch.Generator().manual_seed(10_000 * i + 100 * seed + k)
                        made[name] = continue_exact(exact, ctx, exact.encoder.encode([ret.prompt.text]),
                                                    num_frames=n, layout=layout, use_context=use, generator=gen)
                    for name, model in teachers.items():
                        gen = torch.Generator().manual_seed(10_000 * i + 100 * seed + k)
                        with torch.no_grad():
                            made[name] = continue_with_teacher(model, ctx, encoders[name].encode([ret.prompt.text]),
                                                               uncond[name], num_frames=n, layout=layout,
                                                               num_steps=LEARNED_STEPS, guidance=LEARNED_GUIDANCE,
                                                               generator=gen)
                    for name, lat in made.items():
                        out = codec.decode(lat.float().cpu()).clamp(0, 1)[0].numpy()
                        rows[f"{name} | {source}"][seed].append(score(out, rgb, ret, prev))
        log(f"schedule {i + 1}/{schedules} done ({len(cases)} returns)")
    return {name: {"seeds": per_seed} for name, per_seed in rows.items()}


def _mean_std(values: list[float]) -> list[float]:
    return [float(np.nanmean(values)), float(np.nanstd(values))]


def _mean(cs: list[Continuation], field: str) -> float:
    return float(np.mean([getattr(c, field) for c in cs])) if cs else float("nan")


def summary(rows: dict[str, dict[str, object]]) -> dict[str, dict[str, object]]:
    """Per row: recall and relative error over all returns and over gaps >= ``LONG_GAP_S`` (mean, std over seeds),
    library distance, recall per gap bin (pooled over seeds) and the return count.
    """
    edges = np.asarray(SCENE_BIN_EDGES_S)
    out = {}
    for name, row in rows.items():
        per_seed: list[list[Continuation]] = row["seeds"]
        long = [[c for c in cs if c.gap_s >= LONG_GAP_S] for cs in per_seed]
        pooled = [c for cs in per_seed for c in cs]
        by_gap = bin_by_gap(edges, [c.gap_s for c in pooled], [float(c.recalled) for c in pooled])  # error: recall
        out[name] = {
            "recall": _mean_std([_mean(cs, "recalled") for cs in per_seed]),
            "recall_long": _mean_std([_mean(cs, "recalled") for cs in long]),
            "relative": _mean_std([_mean(cs, "relative") for cs in per_seed]),
            "relative_long": _mean_std([_mean(cs, "relative") for cs in long]),
            "library_distance": _mean_std([_mean(cs, "library_distance") for cs in per_seed]),
            "bin_edges_s": edges.tolist(), "recall_by_gap": by_gap.error.tolist(), "count_by_gap": by_gap.count.tolist(),
            "returns": len(pooled),
        }
    return out


def table(s: dict[str, dict[str, object]]) -> str:
    """The summary as a Markdown table."""
    def fmt(v: list[float], d: int = 2) -> str:
        return "n/a" if not np.isfinite(v[0]) else f"{v[0]:.{d}f} ± {v[1]:.{d}f}"

    lines = ["| teacher \\| context | recall | recall, gaps >= 10 s | rel. revisit | rel. revisit >= 10 s "
             "| library distance | returns |", "|" + " --- |" * 7]
    for name, r in s.items():
        lines.append(f"| {name} | {fmt(r['recall'])} | {fmt(r['recall_long'])} | {fmt(r['relative'])} | "
                     f"{fmt(r['relative_long'])} | {fmt(r['library_distance'], 3)} | {r['returns']} |")
    lines.append(f"\nChance recall {chance_recall():.2f}.")
    return "\n".join(lines)


def write(s: dict[str, dict[str, object]], out: Path, command: str) -> Path:
    """results.json, recall_vs_gap.png and report.md in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "results.json", json.dumps(s, indent=2))
    edges = np.asarray(SCENE_BIN_EDGES_S)
    centres = np.sqrt(edges[:-1] * edges[1:])
    series = {name: (centres, np.asarray(r["recall_by_gap"], dtype=float)) for name, r in s.items()}
    plot = line_plot(series, x_label="gap (toy s, bin centres)", y_label="recall", log_x=True, x_ticks=edges,
                     threshold=chance_recall(), markers=True)
    write_atomic(out / "recall_vs_gap.png", lambda tmp: plot.save(tmp, format="PNG"))
    return write_atomic(out / "report.md", f"# Teachers as continuers on the scene world\n\n`{command}`\n\n{table(s)}\n\n"
                        "![recall by gap (chance as the threshold line)](recall_vs_gap.png)\n")


def main(argv: list[str] | None = None) -> int:
    """Command line: print the table and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", action="append", default=[], help="NAME=learned context teacher (repeat)")
    parser.add_argument("--student", type=Path, default=None, help="student whose video is also a context")
    parser.add_argument("--schedules", type=int, default=6)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--out", type=Path, default=None, help="report folder (default: print only)")
    args = parser.parse_args(argv)
    if args.schedules < 1 or args.seeds < 1 or not args.seconds > 0:
        parser.error("--schedules and --seeds must be positive, --seconds a positive number")
    teachers = {}
    for item in args.teacher:
        name, sep, path = item.partition("=")
        if not sep:
            parser.error(f"--teacher takes NAME=FILE, got {item!r}")
        teachers[name] = load_model(path, dtype=torch.float32).eval()
    student = load_model(args.student, dtype=torch.float32).eval() if args.student else None
    torch.manual_seed(0)
    s = summary(run(teachers, student=student, schedules=args.schedules, seeds=args.seeds, seconds=args.seconds))
    print(table(s))
    if args.out:
        given = sys.argv[1:] if argv is None else argv
        command = "python -m context_forcing_core.eval.toy.scene_continuers " + " ".join(given)
        print(write(s, args.out, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
