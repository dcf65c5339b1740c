"""``python -m training.run eval``: the toy-world benchmark (``--preset toy-benchmark``) or consistency metrics of
real videos (everything else goes to :mod:`context_forcing_core.eval.videos_cli`).

    python -m training.run eval --preset toy-benchmark [--out results/toy-benchmark] [--prompts 6] [--seeds 3]
        [--seconds 60] [--teacher-context 18] [--methods cf,stage1_self_forcing,...]
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import torch

from context_forcing_core.eval.toy.benchmark import BenchmarkConfig, methods, run_benchmark
from context_forcing_core.eval.toy.report import headline_table, summarise, write_report
from context_forcing_core.student import BUNDLED_TOY_STUDENT

PRESETS = ("toy-benchmark", "scene-benchmark")


def main(argv: list[str], prog: str = "python -m training.run eval") -> int:
    """Run the toy benchmark and write its report, or hand the arguments to the real-video evaluation."""
    if "--preset" not in argv:
        from context_forcing_core.eval.videos_cli import main as videos_main

        if {"-h", "--help"} & set(argv):
            print(f"(the toy benchmark: {prog} --preset toy-benchmark --help)")

        return videos_main(argv, prog=prog)
    if "scene-benchmark" in argv:
        return _scenes(argv, prog)
    defaults = BenchmarkConfig()
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=PRESETS, required=True)
    parser.add_argument("--out", type=Path, default=Path("results/toy-benchmark"), help="report folder")
    parser.add_argument("--prompts", type=int, default=defaults.prompts)
    parser.add_argument("--seeds", type=int, default=defaults.seeds)
    parser.add_argument("--seconds", type=float, default=defaults.seconds)
    parser.add_argument("--teacher-context", type=float, default=defaults.teacher_context_s,
                        help="seconds of the CF student's video the context teachers continue")
    parser.add_argument("--methods", default="", help="comma-separated method names (default: all): "
                        + ", ".join(m.name for m in methods(defaults.teacher_context_s)))
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (throughput is measured with them)")
    args = parser.parse_args(argv)
    try:
        cfg = BenchmarkConfig(prompts=args.prompts, seeds=args.seeds, seconds=args.seconds,
                              teacher_context_s=args.teacher_context,
                              only=tuple(m for m in args.methods.split(",") if m))
    except ValueError as err:
        parser.error(str(err))
    for path in (cfg.student, cfg.stage1, cfg.context_teacher, cfg.context_teacher_no_erft):
        if not path.is_file():
            parser.error(f"checkpoint not found: {path}")
    torch.set_num_threads(args.threads)
    run = run_benchmark(cfg, log=lambda line: print(line, flush=True))
    report = write_report(run, args.out, "python -m training.run eval " + shlex.join(argv))
    print(headline_table(run, summarise(run)[1]))
    print(f"wrote {report}")
    return 0


def _scenes(argv: list[str], prog: str) -> int:
    """The scene-world benchmark (``context_forcing_core.eval.toy.scene_benchmark``)."""
    from context_forcing_core.eval.toy import scene_benchmark

    parser = argparse.ArgumentParser(prog=prog, description=scene_benchmark.__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=PRESETS, required=True)
    parser.add_argument("--student", type=Path, default=BUNDLED_TOY_STUDENT,
                        help="student checkpoint (default: the bundled toy student)")
    parser.add_argument("--out", type=Path, default=Path("results/scene-benchmark"), help="report folder")
    parser.add_argument("--schedules", type=int, default=6)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--tau", type=float, default=0.95, help="surprisal threshold of the context_forcing memory")
    parser.add_argument("--methods", default="", help="comma-separated memory rows (default: all): "
                        + ", ".join(scene_benchmark.memories(0.95)))
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
