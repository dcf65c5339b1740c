"""Per-chunk latency and cache size against video length, Context Forcing memory vs. keeping everything.

Run: python -m benchmarks.memory_scaling [--model tiny] [--latent 8 8] [--frames 480] [--repeats 2] [--device cpu]

It generates a 120-s-equivalent rollout (480 latent frames; 4 latent frames = 1 s of Wan video) with each memory
policy, side by side on the same random-weight model, and prints for 5, 20, 60 and 120 s the median latency of the
5 chunks before that mark (each chunk's fastest of --repeats runs) and the bytes of cached K/V held and allocated,
with the 120s/5s and 120s/20s ratios. It then times a 60-s tiny-model rollout and checks the float32 RoPE against
a float64 complex reference. On a GPU: --model wan2.1-t2v-1.3b --latent 60 104 --dtype bfloat16 --device cuda.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from context_forcing_core import generate, model_preset, stream
from context_forcing_core.models.rope import apply_rope, axis_frequencies, rope_angles
from context_forcing_core.models.wan import WanModel

FRAMES_PER_SECOND = 4  # latent frames per second of 16-fps Wan video
MARKS_S = (5, 20, 60, 120)


def timed_rollout(model, text, frames, memory, latent, device, compile_attention=False):
    """Per-chunk wall time (s), occupied and allocated cache bytes after each chunk."""
    times, sizes, allocated = [], [], []
    start = time.perf_counter()

    def sync():
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    for out in stream(model, text, num_latent_frames=frames, memory=memory, seed=0, latent_size=latent,
                      compile_attention=compile_attention):
        sync()
        now = time.perf_counter()
        times.append(now - start)
        sizes.append(out.step.cache_bytes)
        allocated.append(out.step.allocated_bytes)
        start = now
    return times, sizes, allocated


def at_mark(values, seconds, chunk_frames=3, window=5):
    """Median over the ``window`` chunks ending at ``seconds`` of video (robust to a noisy neighbour process)."""
    end = min(len(values), seconds * FRAMES_PER_SECOND // chunk_frames)
    return statistics.median(values[max(0, end - window):end])


def rope_error() -> float:
    """Max relative error of the float32 RoPE path against float64 complex rotation (head width 128)."""
    torch.manual_seed(0)
    x = torch.randn(1, 21 * 60, 2, 128, dtype=torch.float64)
    pos = torch.arange(1003, 1024)  # the far end of Wan's 1024-entry table
    cos, sin = rope_angles(pos, 6, 10, (44, 42, 42))
    got = apply_rope(x.float(), cos, sin).double()
    angles = torch.cat([
        (pos[:, None, None, None].double() * axis_frequencies(44)).expand(21, 6, 10, 22),
        (torch.arange(6)[None, :, None, None].double() * axis_frequencies(42)).expand(21, 6, 10, 21),
        (torch.arange(10)[None, None, :, None].double() * axis_frequencies(42)).expand(21, 6, 10, 21),
    ], dim=-1).reshape(-1, 64)
    ref = torch.view_as_real(torch.view_as_complex(x.unflatten(-1, (-1, 2))) * torch.polar(torch.ones_like(angles),
                                                                                            angles)[None, :, None])
    return ((got - ref.flatten(-2)).abs().max() / ref.abs().max()).item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--latent", type=int, nargs=2, default=(8, 8), help="latent H W")
    parser.add_argument("--frames", type=int, default=480)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--policies", nargs="+", default=["context_forcing", "full"])
    parser.add_argument("--repeats", type=int, default=2, help="rollouts per policy; per-chunk minimum is kept")
    args = parser.parse_args()
    torch.manual_seed(0)
    cfg = model_preset(args.model)
    model = WanModel(cfg).to(device=args.device, dtype=getattr(torch, args.dtype)).eval()
    text = torch.randn(1, cfg.text_len, cfg.text_dim)
    latent = tuple(args.latent)
    tokens = latent[0] * latent[1] // (cfg.patch_size[1] * cfg.patch_size[2])
    print(f"model {args.model} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f} M params), latent {latent} "
          f"= {tokens} tokens/frame, {args.frames} latent frames, {args.device}, {args.dtype}, "
          f"{torch.get_num_threads()} threads")
    marks = [m for m in MARKS_S if m * FRAMES_PER_SECOND <= args.frames]
    results = {}
    for policy in args.policies:
        timed_rollout(model, text, 12, policy, latent, args.device)  # warm-up
        runs = [timed_rollout(model, text, args.frames, policy, latent, args.device) for _ in range(args.repeats)]
        times = [min(chunk) for chunk in zip(*(r[0] for r in runs))]  # the least-disturbed run of each chunk
        results[policy] = (times, runs[0][1], runs[0][2])
        total = sum(times)
        print(f"{policy}: {total:.1f} s total, {4 * args.frames - 3} pixel frames -> "
              f"{(4 * args.frames - 3) / total:.1f} frames/s (denoise + cache, no VAE; "
              f"per-chunk minimum of {args.repeats} runs)")
    print("video s | " + " | ".join(f"{p}: ms/chunk, cache MB held, MB allocated" for p in results))
    for m in marks:
        row = [f"{at_mark(t, m) * 1e3:7.1f} {at_mark(s, m) / 2**20:7.2f} {at_mark(a, m) / 2**20:7.2f}"
               for t, s, a in results.values()]
        print(f"{m:>7} | " + " | ".join(row))
    last = marks[-1]
    for first in marks[:2]:
        for p, (t, s, a) in results.items():
            print(f"{p}: {last}s/{first}s ratios: latency {at_mark(t, last) / at_mark(t, first):.2f}, "
                  f"cache held {at_mark(s, last) / at_mark(s, first):.2f}, "
                  f"allocated {at_mark(a, last) / at_mark(a, first):.2f}")

    tiny_cfg = model_preset("tiny")
    tiny_model = WanModel(tiny_cfg).eval()
    tiny_text = torch.randn(1, tiny_cfg.text_len, tiny_cfg.text_dim)
    t0 = time.perf_counter()
    generate(tiny_model, tiny_text, num_latent_frames=240, memory="context_forcing", seed=0, latent_size=(8, 8))
    print(f"tiny model, 240 latent frames (60 s), 16 tokens/frame, context_forcing: {time.perf_counter() - t0:.2f} s")
    print(f"RoPE float32 vs float64 complex reference, positions 1003..1023: max relative error {rope_error():.2e}")


if __name__ == "__main__":
    main()
