"""``python -m training.run eval``: the scene-world benchmark (``--preset scene-benchmark``) or consistency metrics of
real videos (everything else goes to :mod:`context_forcing_core.eval.videos_cli`).

    python -m training.run eval --preset scene-benchmark [--student FILE] [--out results/scene-benchmark]
        [--schedules 6] [--seeds 3] [--seconds 60] [--methods context_forcing,self_forcing,...]
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import torch

from context_forcing_core.student import BUNDLED_TOY_STUDENT

PRESETS = ("scene-benchmark",)
DEFAULT_PRESET = "scene-benchmark"


def main(argv: list[str], prog: str = "python -m training.run eval") -> int:
    """Run the scene benchmark and write its report, or hand the arguments to the real-video evaluation."""
    if "--preset" not in argv:
        from context_forcing_core.eval.videos_cli import main as videos_main

        if {"-h", "--help"} & set(argv):
            print(f"(the toy-world benchmark: {prog} --preset {DEFAULT_PRESET} --help)")

        return videos_main(argv, prog=prog)
    return _scenes(argv, prog)


def _scenes(argv: list[str], prog: str) -> int:
    """The scene-world benchmark (``context_forcing_core.eval.toy.scene_benchmark``)."""
    from context_forcing_core.eval.toy import scene_benchmark

    parser = argparse.ArgumentParser(prog=prog, description=scene_benchmark.__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=PRESETS, default=DEFAULT_PRESET)
    parser.add_argument("--student", type=Path, default=BUNDLED_TOY_STUDENT,
                        help="student checkpoint (default: the bundled toy student)")
    parser.add_argument("--out", type=Path, default=Path("results/scene-benchmark"), help="report folder")
    parser.add_argument("--schedules", type=int, default=6)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--tau", type=float, default=None,
                        help="surprisal threshold of the context_forcing memory (default: the preset's)")
    parser.add_argument("--methods", default="", help="comma-separated memory rows (default: all): "
                        + ", ".join(scene_benchmark.memories()))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if not args.student.is_file():
        parser.error(f"checkpoint not found: {args.student}")
    if args.schedules < 1 or args.seeds < 1 or not args.seconds >= 6:
        parser.error("--schedules and --seeds must be positive and --seconds at least 6")
    torch.set_num_threads(args.threads)
    summary = scene_benchmark.run(args.student, schedules=args.schedules, seeds=args.seeds, seconds=args.seconds,
                                  tau=args.tau, only=tuple(m for m in args.methods.split(",") if m))
    report = scene_benchmark.write(summary, args.out, "python -m training.run eval " + shlex.join(argv))
    print(scene_benchmark.table(summary))
    print(f"wrote {report}")
    return 0
