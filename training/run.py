"""Training CLI of Context Forcing: one command, one stage at a time.

    python -m training.run prepare-data --videos DIR --captions captions.csv --vae VAE --text-encoder UMT5 --out DIR
    python -m training.run teacher --config toy-scenes-teacher --out outputs/teacher
    python -m training.run context-teacher --config toy-scenes-context-teacher --init TEACHER_EMA.safetensors
    python -m training.run ode-init --config toy-scenes-ode-init --teacher TEACHER_EMA.safetensors --out outputs/ode
    python -m training.run stage1 --config toy-scenes-stage1 --init ODE_EMA.safetensors --out outputs/stage1
    python -m training.run stage2 --config toy-scenes-stage2 --init STAGE1_EMA.safetensors --out outputs/stage2
    python -m training.run export --run outputs/stage2 --out toy_student.safetensors [--dtype bfloat16]
    python -m training.run stage2 --config wan-1.3b-stage2 --dry-run          # validates on CPU (meta device)
    python -m training.run eval --preset scene-benchmark                    # memory policies on the toy world
    python -m training.run eval --videos DIR --prompts FILE --weights-dir DIR --out DIR  # real-video consistency
    torchrun --nproc_per_node 2 -m training.run stage1 --config toy-scenes-stage1 --out outputs/stage1-dp  # 2 CPU ranks

``python -m training.pipeline`` runs the whole toy recipe in order and exports its student.

``--config`` takes a preset name or a JSON file of a resolved config (a run folder's ``config.json``, old flat ones
too); every ``--field value`` or ``--section.field value`` (``--section.sub.field value``) after it overrides one
setting, e.g. ``--steps 300 --optim.generator.lr 1e-4 --scenes.read_weight 0`` (the flat names of configs written
before the sections, ``--read_weight 0``, still work). ``--dry-run`` builds student, critic and teacher, runs the
shapes of one step without training (on the meta device when the config's device is not available here), prints
the parameter counts and a per-GPU memory estimate, and writes the resolved config. Under torchrun every rank
trains on its share of each global batch (``batch_size * grad_accum`` per rank, see ``training.distributed``);
rank 0 writes the config, metrics and checkpoints.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from context_forcing_core.atomic import write_atomic
from context_forcing_core.memory.slow_fast import SlowFastMemory
from context_forcing_core.models.config import model_preset
from context_forcing_core.models.wan import WanModel

from .config import STAGES, TrainConfig, apply_overrides, config_from_dict
from .distributed import init_distributed, shutdown
from .export import export_student
from .loop import build_run, train
from .presets import preset
from .updates import closed_form_teacher


@dataclass(kw_only=True, slots=True)
class DryRunReport:
    """What a dry run checked."""

    device: str
    """Where the shapes ran ("meta" when the config's device is missing here)."""
    parameters: dict[str, int]
    """Parameter count of student, critic and teacher."""
    memory_bytes: dict[str, int]
    """Estimated bytes per GPU by item (weights, optimiser states, gradients, EMA, KV cache)."""
    student_chunk: tuple[int, ...]
    """Shape of one student chunk's flow through its memory."""
    teacher_clip: tuple[int, ...]
    """Shape of the teacher's flow on a target clip."""


def load_config(stage: str, source: str, overrides: dict[str, str]) -> TrainConfig:
    """Resolve a preset name or a resolved-config JSON file (today's or an old flat one, ``config_from_dict``) plus
    overrides, and check it is for ``stage``.
    """
    cfg = config_from_dict(json.loads(Path(source).read_text())) if source.endswith(".json") else preset(source)
    cfg = apply_overrides(cfg, overrides)
    if cfg.stage != stage:
        raise ValueError(f"config {source!r} is for {cfg.stage}, not {stage}")
    return cfg


def dry_run(cfg: TrainConfig, world_size: int = 1) -> DryRunReport:
    """Build every network and run the shapes of one step; nothing is trained. ``world_size`` GPUs share the
    sharded items when ``cfg.runtime.fsdp``.
    """
    available = cfg.runtime.device == "cpu" or (cfg.runtime.device.startswith("cuda") and torch.cuda.is_available())
    device = torch.device(cfg.runtime.device if available else "meta")
    dtype = getattr(torch, cfg.runtime.dtype)
    with device:
        student = WanModel(model_preset(cfg.model)).to(dtype)
        critic = WanModel(model_preset(cfg.model)).to(dtype)
    s_cfg = student.config
    teacher = closed_form_teacher(cfg, device)  # a world's teacher by name: no weights
    if teacher is None:
        with device:
            teacher = WanModel(model_preset(cfg.teacher)).to(dtype).requires_grad_(False)
        t_cfg = teacher.config
        if t_cfg.in_channels != s_cfg.in_channels or t_cfg.text_dim != s_cfg.text_dim:
            raise ValueError("teacher and student must share latent channels and text width")
    mem_cfg = cfg.memory_config()
    chunk = mem_cfg.chunk_frames
    with torch.no_grad(), device:
        text = torch.randn(cfg.batch_size, s_cfg.text_len, s_cfg.text_dim)
        mem = SlowFastMemory(mem_cfg, s_cfg)
        mem.begin_chunk(range(chunk))
        x = torch.randn(cfg.batch_size, s_cfg.in_channels, chunk, *cfg.rollout.latent_size)
        flow = student(x, torch.full((cfg.batch_size, chunk), 1000.0), text, attention=mem.attention(commit=True))
        mem.end_chunk()
        clip = torch.randn(cfg.batch_size, s_cfg.in_channels, cfg.rollout.target_frames, *cfg.rollout.latent_size)
        teacher_flow = teacher(clip, torch.full((cfg.batch_size,), 500.0), text)
    if flow.shape != x.shape or teacher_flow.shape != clip.shape:
        raise RuntimeError(f"shape check failed: {tuple(flow.shape)} vs {tuple(x.shape)}")
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in
              (("student", student), ("critic", critic), ("teacher", teacher))}
    size = torch.finfo(dtype).bits // 8
    cache = mem.nbytes() // chunk * (mem_cfg.capacity or cfg.rollout.frames)
    trained = ["student"] + (["critic"] if cfg.stage in ("stage1", "stage2") else [])
    n_trained = sum(counts[k] for k in trained)
    shards = world_size if cfg.runtime.fsdp else 1  # FSDP shards what is trained (and the EMA), not the frozen teacher
    each = f", 1/{shards} per GPU (FSDP)" if shards > 1 else ""
    memory = {
        f"weights ({' + '.join(trained)}{each})": n_trained * size // shards,
        f"AdamW states, fp32 ({' + '.join(trained)}{each})": 8 * n_trained // shards,
        f"gradients ({' + '.join(trained)}{each})": n_trained * size // shards,
        f"EMA of the student{each}": counts["student"] * size // shards,
    }
    if cfg.stage in ("ode-init", "stage1", "stage2"):
        memory["frozen teacher weights"] = counts["teacher"] * size
    if cfg.stage not in ("teacher", "context-teacher"):  # the causal student runs through its memory
        memory["student KV cache (bounded memory)"] = cache
    return DryRunReport(device=str(device), parameters=counts, memory_bytes=memory, student_chunk=tuple(flow.shape),
                        teacher_clip=tuple(teacher_flow.shape))


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run a stage (or its dry run)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["prepare-data"]:  # its own options (videos, captions, VAE, text encoder) and --help
        from .data.prepare import main as prepare_main

        return prepare_main(argv[1:], prog="python -m training.run prepare-data")
    if argv[:1] == ["eval"]:  # its own options and --help: see training.eval
        from .eval import main as eval_main

        return eval_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m training.run", description=__doc__.splitlines()[0])
    parser.add_argument("stage", choices=("prepare-data", *STAGES, "export", "eval"))
    parser.add_argument("--config", help="preset name or a resolved-config JSON file (training stages)")
    parser.add_argument("--run", type=Path, help="export: the run folder whose latest checkpoint is exported")
    parser.add_argument("--no-ema", action="store_true", help="export: the raw student instead of its EMA")
    parser.add_argument("--step", type=int, default=None, help="export: this step's checkpoint instead of the latest")
    parser.add_argument("--out", type=Path, default=None, help="run folder (default outputs/<config>)")
    parser.add_argument("--dry-run", action="store_true", help="build and check shapes, no training")
    parser.add_argument("--gpus", type=int, default=1, help="dry run: GPUs the memory estimate assumes (with --fsdp)")
    parser.add_argument("--teacher", default=None, help="teacher checkpoint (real score); default: preset init")
    parser.add_argument("--init", default=None, help="student initialisation checkpoint (e.g. the ODE init)")
    parser.add_argument("--resume", action="store_true", help="continue from the run folder's latest checkpoint")
    args, rest = parser.parse_known_args(argv)
    if args.stage == "export":
        dtype = rest[1] if rest[:1] == ["--dtype"] and len(rest) == 2 else None
        if args.run is None or args.out is None or (rest and dtype not in ("float32", "bfloat16")):
            parser.error("export needs --run RUN_DIR --out FILE.safetensors, optionally --dtype float32|bfloat16, "
                         "and nothing else")
        try:
            exported = export_student(args.run, args.out, use_ema=not args.no_ema,
                                      dtype=getattr(torch, dtype) if dtype else None, step=args.step)
            print(f"wrote {exported}")
        except (ValueError, FileNotFoundError) as err:
            parser.error(str(err))
        return 0
    if args.config is None:
        parser.error(f"{args.stage} needs --config")
    if len(rest) % 2 or any(not k.startswith("--") for k in rest[::2]):
        parser.error(f"overrides come as '--field value' pairs, got {rest}")
    overrides = {k[2:]: v for k, v in zip(rest[::2], rest[1::2])}
    try:
        cfg = load_config(args.stage, args.config, overrides)
    except ValueError as err:
        parser.error(str(err))
    out = args.out or Path("outputs") / Path(args.config).stem
    out.mkdir(parents=True, exist_ok=True)
    if not args.dry_run:
        try:
            ctx = init_distributed(cfg.runtime.device)
        except ValueError as err:
            parser.error(str(err))
        try:
            if ctx.is_main:
                write_atomic(out / "config.json", cfg.to_json())
            try:
                run = build_run(cfg, teacher=args.teacher, student_init=args.init, dist=ctx)
            except ValueError as err:
                parser.error(str(err))
            train(run, out, resume=args.resume)
        finally:
            shutdown(ctx)
        return 0
    write_atomic(out / "config.json", cfg.to_json())
    if args.gpus < 1:
        parser.error(f"--gpus must be positive, got {args.gpus}")
    report = dry_run(cfg, world_size=args.gpus)
    print(f"{args.stage} dry run on {report.device}: student chunk {report.student_chunk}, "
          f"teacher clip {report.teacher_clip}")
    for name, n in report.parameters.items():
        print(f"  {name}: {n / 1e6:.1f} M parameters")
    print("  memory estimate per GPU (before activations):")
    for name, n in report.memory_bytes.items():
        print(f"    {name}: {n / 2**30:.2f} GiB")
    print(f"    total: {sum(report.memory_bytes.values()) / 2**30:.2f} GiB")
    print(f"resolved config: {out / 'config.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
