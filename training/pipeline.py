"""The whole toy recipe in order, each stage through the CLI: the learned teacher and context teacher (measured
beside the exact ones, not used by the later stages), the first-visit ODE init (regression onto the exact teacher's
quantile-coupled first visits, from random weights), then from its EMA both Stage 1 (DMD against the exact short
teacher) and Stage 2 (regression onto the exact long teacher), export of Stage 2.

    python -m training.pipeline --out outputs/toy-pipeline [--scale 1.0] [--export FILE] [--device cuda]

Every stage resumes from its latest checkpoint, so an interrupted pipeline continues where it stopped. ``--scale``
multiplies every stage's steps (and the regression's teacher-forcing ramp), for quick checks. The wall time of each
stage goes to ``<out>/pipeline.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from context_forcing_core.atomic import write_atomic

from .presets import preset
from .run import main as run_stage

STAGES = {  # run folder -> (CLI stage, preset)
    "teacher": ("teacher", "toy-scenes-teacher"),
    "context-teacher": ("context-teacher", "toy-scenes-context-teacher"),
    "first-visit": ("ode-init", "toy-scenes-first-visit"),
    "stage1": ("stage1", "toy-scenes-stage1"),
    "stage2": ("stage2", "toy-scenes-stage2"),
}
ORDER = tuple(STAGES)
INPUTS = {"context-teacher": [("--init", "teacher")],  # run folder -> (flag, run folder whose EMA it reads)
          "stage1": [("--init", "first-visit")],  # Stage 1 and 2 are twins from one init; the exact teachers
          "stage2": [("--init", "first-visit")]}  # come with their presets


def _ema(folder: Path) -> str:
    return str(folder / (folder / "latest").read_text().strip() / "student_ema.safetensors")


def stage_commands(out: Path, scale: float, device: str | None = None) -> list[tuple[str, list[str]]]:
    """The CLI argument lists of the stages, in order (paths are filled in as earlier stages finish); ``device``
    overrides every stage's device (the toy presets train on the CPU).
    """
    cmds = []
    for stage, (verb, name) in STAGES.items():
        cfg = preset(name)
        args = [verb, "--config", name, "--out", str(out / stage), "--resume",
                "--steps", str(max(1, round(cfg.steps * scale)))]
        if cfg.objective == "regression":
            args += ["--scenes.teacher_forcing_ramp_steps", repr(cfg.scenes.teacher_forcing_ramp_steps * scale)]
        if device:
            args += ["--runtime.device", device]
        cmds.append((stage, args))
    return cmds


def run_pipeline(out: Path, *, scale: float = 1.0, export: Path | None = None,
                 device: str | None = None) -> dict[str, float]:
    """Run every stage of the recipe and export the student; returns seconds per stage."""
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    for stage, args in stage_commands(out, scale, device):
        for flag, source in INPUTS.get(stage, []):
            args += [flag, _ema(out / source)]
        print(f"== {stage}: python -m training.run {' '.join(args)}", flush=True)
        start = time.perf_counter()
        if run_stage(args) != 0:
            raise RuntimeError(f"stage {stage} failed")
        seconds[stage] = time.perf_counter() - start
        write_atomic(out / "pipeline.json", json.dumps({"scale": scale, "seconds": seconds}, indent=2))
    target = export or out / "toy_student.safetensors"
    run_stage(["export", "--run", str(out / "stage2"), "--out", str(target)])
    print("seconds per stage: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items())
          + f"; total {sum(seconds.values()):.0f}", flush=True)
    return seconds


def main(argv: list[str] | None = None) -> int:
    """Command line of :func:`run_pipeline`."""
    parser = argparse.ArgumentParser(prog="python -m training.pipeline", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/toy-pipeline"))
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every stage's steps by this")
    parser.add_argument("--export", type=Path, default=None, help="student file (default <out>/toy_student.safetensors)")
    parser.add_argument("--device", default=None, help="device of every stage, e.g. cuda (default: the presets' cpu)")
    args = parser.parse_args(argv)
    if args.scale <= 0:
        parser.error("--scale must be positive")
    run_pipeline(args.out, scale=args.scale, export=args.export, device=args.device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
