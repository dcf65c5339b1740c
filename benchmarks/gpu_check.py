"""The one GPU check: Wan2.1-T2V-1.3B (random weights) streaming 60 s at 480 x 832, memory x eager / compiled.

Run on a machine lent an accelerator (``make gpu-check``, or ``bash benchmarks/gpu_check.sh``):
    python -m benchmarks.gpu_check --out gpu_check.json
CPU dry run (a tiny model, a small latent, a few seconds: what the test suite runs):
    python -m benchmarks.gpu_check --dry --out dry.json

For every (memory, attention) run, in that order: context_forcing eager, context_forcing compiled, full eager, full
compiled: frames per second of the whole rollout (denoising + cache, no text encoder or VAE), the median per-chunk
latency over the 5 chunks before 5 / 20 / 60 s of video, peak device memory, and which SDPA kernel ran. A run that
would start after ``--budget-s`` seconds is skipped and listed as skipped. One JSON file (written atomically) and a
printed table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from context_forcing_core.atomic import write_atomic
from context_forcing_core.memory.config import memory_preset
from context_forcing_core.models.attention import sdpa
from context_forcing_core.models.config import model_preset
from context_forcing_core.models.wan import WanModel

from .memory_scaling import FRAMES_PER_SECOND, at_mark, timed_rollout

PIXEL_FRAMES_PER_LATENT = 4
MARKS_S = (5, 20, 60)
RUNS = (("context_forcing", False), ("context_forcing", True), ("full", False), ("full", True))


class _KernelSpy(TorchDispatchMode):
    """Records the aten op that scaled_dot_product_attention dispatches to."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if "scaled_dot_product" in name:
            self.ops.append(name)
        return func(*args, **(kwargs or {}))


def sdpa_kernel(tokens: int, heads: int, device: torch.device, dtype: torch.dtype) -> str:
    """The SDPA implementation PyTorch picks for a chunk's queries over ``tokens`` keys (flash, efficient, ...)."""
    q = torch.randn(1, tokens, heads, 128, device=device, dtype=dtype)
    with torch.no_grad(), _KernelSpy() as spy:
        sdpa(q, q, q)
    return spy.ops[-1].removeprefix("_scaled_dot_product_") if spy.ops else "unknown"


def rollout(model: WanModel, text: torch.Tensor, frames: int, memory: str, latent: tuple[int, int],
            compiled: bool, device: torch.device) -> dict:
    """Stream one video; per-chunk wall times and peak memory."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times, _, _ = timed_rollout(model, text, frames, memory, latent, str(device), compile_attention=compiled)
    total = sum(times)
    marks = {f"{m}s": at_mark(times, m, frames // len(times)) for m in MARKS_S}
    pixel_frames = PIXEL_FRAMES_PER_LATENT * (frames - 1) + 1
    return {"seconds": total, "fps": pixel_frames / total, "chunk_latency_s": marks,
            "first_chunk_s": times[0],
            "peak_memory_bytes": torch.cuda.max_memory_allocated() if device.type == "cuda" else None}


def write_json(path: Path, data: dict) -> None:
    """Write ``data`` as JSON to ``path`` atomically."""
    write_atomic(path, json.dumps(data, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--dry", action="store_true", help="tiny model, small latent, CPU: checks the script runs")
    parser.add_argument("--seconds", type=float, default=None, help="video length (default 60; dry: 2)")
    parser.add_argument("--budget-s", type=float, default=420.0, help="skip runs that would start after this")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    if args.dry:
        name, device, dtype, latent = "tiny", torch.device("cpu"), torch.float32, (8, 8)
    else:
        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: run with --dry for the CPU check")
        name, device, dtype, latent = "wan2.1-t2v-1.3b", torch.device("cuda"), torch.bfloat16, (60, 104)
    seconds = args.seconds or (2.0 if args.dry else 60.0)
    cfg = model_preset(name)
    torch.manual_seed(0)
    with torch.device(device):
        model = WanModel(cfg).to(dtype).eval()
    text = torch.randn(1, cfg.text_len, cfg.text_dim, device=device, dtype=dtype)
    chunk = memory_preset("context_forcing").chunk_frames  # both memories use this chunk size
    frames = int(seconds * FRAMES_PER_SECOND) // chunk * chunk
    tokens = latent[0] * latent[1] // (cfg.patch_size[1] * cfg.patch_size[2])
    report = {
        "model": name, "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "dtype": str(dtype).removeprefix("torch."), "latent": list(latent), "tokens_per_frame": tokens,
        "latent_frames": frames, "torch": torch.__version__,
        "sdpa_kernel": sdpa_kernel(3 * tokens, cfg.num_heads, device, dtype), "runs": [], "skipped": [],
    }
    began = time.perf_counter()
    for memory, compiled in RUNS:
        label = f"{memory}, {'compiled' if compiled else 'eager'}"
        if time.perf_counter() - began > args.budget_s:
            report["skipped"].append(label)
            continue
        result = rollout(model, text, frames, memory, latent, compiled, device)
        report["runs"].append({"memory": memory, "compiled": compiled} | result)
        write_json(args.out, report)  # what has run so far survives a timeout
        lat = result["chunk_latency_s"]
        print(f"{label:>28}: {result['fps']:7.2f} FPS, ms/chunk at " + ", ".join(
            f"{k} {v * 1e3:.0f}" for k, v in lat.items()) + f", first chunk {result['first_chunk_s']:.1f} s"
              + (f", peak {result['peak_memory_bytes'] / 2**30:.1f} GiB" if result["peak_memory_bytes"] else ""))
    write_json(args.out, report)
    print(f"SDPA kernel: {report['sdpa_kernel']}; skipped: {report['skipped'] or 'none'}; wrote {args.out}")


if __name__ == "__main__":
    main()
