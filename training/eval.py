"""``python -m training.run eval``: the toy-world benchmark (``--preset toy-benchmark``) or consistency metrics of
real videos (everything else goes to :mod:`training.eval_videos`).

    python -m training.run eval --preset toy-benchmark [--out results/toy-benchmark] [--prompts 6] [--seeds 3]
        [--seconds 60] [--teacher-context 18] [--methods cf,stage1_self_forcing,...]
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import torch

from .toy_benchmark import BenchmarkConfig, methods, run_benchmark
from .toy_report import headline_table, summarise, write_report

PRESETS = ("toy-benchmark",)


def main(argv: list[str], prog: str = "python -m training.run eval") -> int:
    """Run the toy benchmark and write its report, or hand the arguments to the real-video evaluation."""
    if "--preset" not in argv:
        from .eval_videos import main as videos_main

        if {"-h", "--help"} & set(argv):
            print(f"(the toy benchmark: {prog} --preset toy-benchmark --help)")

        return videos_main(argv, prog=prog)
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
