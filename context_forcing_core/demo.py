"""Core demo: a 60-s-equivalent rollout through the Slow-Fast Memory with a tiny random-weight model.

Run: python -m context_forcing_core.demo [--frames 240] [--memory context_forcing] [--out outputs/demo]

It shows what the memory does, not what a trained model draws: the cache stays at 21 frames while the video
grows, the sink stays, surprising chunks enter slow memory. Writes the trace (JSON) and a slot-map picture.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from . import generate, memory_preset, model_preset
from .atomic import write_atomic
from .memory.plot import slot_map_image
from .models.wan import WanModel


def main(argv: list[str] | None = None) -> None:
    """Generate, print a summary every 10 s of video, write ``trace.json`` and ``slot_map.png``."""
    parser = argparse.ArgumentParser(description="Context Forcing core demo (tiny random model, CPU)")
    parser.add_argument("--frames", type=int, default=240, help="latent frames (4 per second of video)")
    parser.add_argument("--memory", default="context_forcing", help="memory preset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    cfg = model_preset("tiny")
    model = WanModel(cfg).eval()
    text = torch.randn(1, cfg.text_len, cfg.text_dim)
    memory = memory_preset(args.memory)
    start = time.perf_counter()
    result = generate(model, text, num_latent_frames=args.frames, memory=memory, seed=args.seed, latent_size=(8, 8),
                      progress=lambda done, total: print(f"\rchunk {done}/{total}", end="", flush=True))
    elapsed = time.perf_counter() - start
    print(f"\n{args.frames} latent frames ({args.frames / 4:.0f} s of video) in {elapsed:.1f} s with '{args.memory}'")
    print(" video s | attended frames | slow memory (layer 0)          | cache KiB")
    for step in result.trace.chunks:
        if (step.frames[-1] + 1) % 40 == 0:
            ls = step.layers[0]
            slow = [f for f, r in ls.roles.items() if r == "slow"]
            print(f"{(step.frames[-1] + 1) / 4:8.0f} | {len(ls.slot_map):15d} | {str(slow)[:30]:30s} | "
                  f"{step.cache_bytes / 1024:9.0f}")
    args.out.mkdir(parents=True, exist_ok=True)
    write_atomic(args.out / "trace.json", json.dumps(result.trace.to_dict()))
    image = slot_map_image(result.trace)
    write_atomic(args.out / "slot_map.png", lambda tmp: image.save(tmp, format="PNG"))
    print(f"wrote {args.out / 'trace.json'} and {args.out / 'slot_map.png'}")


if __name__ == "__main__":
    main()
