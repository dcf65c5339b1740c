"""Evaluate generated videos: Context Forcing's DINOv2 / CLIP-F / CLIP-T curves and VBench subject / background.

    python -m training.run eval --videos outputs/videos --prompts prompts.txt --weights-dir weights --out outputs/eval
    python -m training.run eval ... --backbones dinov2,clip --timestamps 10,20,30,40,50,60 --device cuda --batch-size 64

``--prompts`` has one prompt per line, line k for the k-th ``*.mp4`` of ``--videos`` sorted by file name.
``--weights-dir`` holds ``dinov2/``, ``dino/`` and ``clip/`` transformers checkpoint folders (safetensors); nothing is
downloaded (see context_forcing_core/eval/README.md for where to get them). Writes ``<out>/videos/<name>.json`` per
video and ``<out>/aggregate.json`` (mean and std over videos).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from context_forcing_core.eval.backbones import BACKBONES, POOLINGS, BackboneConfig, load_backbones
from context_forcing_core.eval.evaluate import DEFAULT_TIMESTAMPS_S, EvalConfig, evaluate_folder, list_videos, read_prompts


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected comma-separated seconds, got {text!r}") from err
    if not values:
        raise argparse.ArgumentTypeError("expected at least one timestamp")
    return values


def _kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in BACKBONES]
    if not kinds or unknown:
        raise argparse.ArgumentTypeError(f"backbones must be a comma-separated subset of {','.join(BACKBONES)}, "
                                         f"got {text!r}")
    return kinds


def build_parser(prog: str) -> argparse.ArgumentParser:
    """The command's flags."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=Path, required=True, help="folder of .mp4 files")
    parser.add_argument("--prompts", type=Path, required=True, help="one prompt per line, videos sorted by name")
    parser.add_argument("--weights-dir", type=Path, required=True, help="folder with dinov2/, dino/, clip/")
    parser.add_argument("--out", type=Path, required=True, help="output folder for the JSON files")
    parser.add_argument("--backbones", type=_kinds, default=tuple(BACKBONES),
                        help="comma-separated: dinov2 (DINOv2 curve), dino (VBench subject), clip (CLIP-F, CLIP-T, "
                             "VBench background); default all")
    parser.add_argument("--timestamps", type=_floats, default=DEFAULT_TIMESTAMPS_S,
                        help="curve timestamps in seconds, comma-separated (default 10,20,...,60; clipped per video)")
    parser.add_argument("--half-width", type=float, default=0.5, help="half window length in seconds (default 0.5)")
    parser.add_argument("--batch-size", type=int, default=32, help="frames per decode / forward batch (default 32)")
    parser.add_argument("--device", default="cpu", help="torch device of the backbones (default cpu)")
    parser.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    parser.add_argument("--pooling", default="cls", choices=POOLINGS, help="DINO / DINOv2 token (default cls)")
    parser.add_argument("--image-size", type=int, default=None,
                        help="override every backbone's resize short side and crop size in pixels (default 224)")
    parser.add_argument("--fps", type=float, default=None, help="frame rate overriding the containers' own")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def _check_device(name: str) -> None:
    """Raise ValueError for a device string torch does not parse, or a CUDA device this machine lacks."""
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"--device {name!r}: {err}") from err
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.type == "cuda" and (device.index or 0) >= count:
        raise ValueError(f"--device {name}: this machine has {count} CUDA device(s)")


def main(argv: list[str] | None = None, prog: str = "python -m training.run eval") -> int:
    """Entry point; input errors exit with status 2 and a one-line message naming the file."""
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        _check_device(args.device)
        cfg = EvalConfig(timestamps_s=args.timestamps, half_width_s=args.half_width, batch_size=args.batch_size,
                         progress=not args.no_progress)
        backbone_cfg = BackboneConfig(device=args.device, batch_size=args.batch_size, dtype=args.dtype,
                                      pooling=args.pooling, image_size=args.image_size)
        read_prompts(args.prompts, list_videos(args.videos))  # fail on inputs before loading any model
        backbones = load_backbones(args.weights_dir, args.backbones, backbone_cfg)
        aggregate = evaluate_folder(args.videos, args.prompts, args.out, backbones, cfg, fps=args.fps)
    except (ValueError, FileNotFoundError, ImportError) as err:
        parser.error(str(err))
    print(f"{aggregate['num_videos']} videos -> {args.out / 'aggregate.json'}")
    for name, s in aggregate["scores"].items():
        print(f"  {name}: {s['mean']:.4f} +- {s['std']:.4f}")
    for name, c in aggregate["curves"].items():
        print(f"  {name}: " + ", ".join(f"{t:g}s {m:.4f}" for t, m in zip(c["timestamps_s"], c["mean"])))
    return 0


if __name__ == "__main__":
    sys.exit(main(prog="python -m context_forcing_core.eval.videos_cli"))
