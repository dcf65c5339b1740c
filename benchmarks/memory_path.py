"""What the memory's attention costs per pass beyond attention itself: counted, and timed against bare SDPA.

Run: python -m benchmarks.memory_path [--tokens 390] [--layers 2] [--heads 12] [--chunks 32] [--device cpu]

Side by side in one run, on the same memory state: the in-place read path (inference) and read-and-concatenate (the
path every pass took before, which autograd still takes). A memory with Wan2.1-1.3B's head layout (12 heads of 128,
its RoPE split) and ``--layers`` layers is filled through its write path with random K/V until its cache is in
steady state (the Context Forcing preset: 21 attended frames, slow memory consolidating), then one more chunk of 5
passes (4 denoising + the commit) runs under a counting dispatch mode, per path:

- **bytes beyond the chunk**: output bytes of data-movement ops (cat, stack, index_select, gather, clone, copy_,
  index_copy, slice_scatter) larger than one of the chunk's own K or V tensors, i.e. whatever touches the history;
- **history rotations**: key rows rotated beyond the chunk's own q and k, over the rows the history holds;
- **host syncs**: device-to-host reads (``item``, ``tolist``, ``nonzero``) and tensors built from host data (an
  index tensor, a transfer on a GPU), counted as ops.

It then times one pass per layer, per path, beside bare SDPA over the same queries and number of keys (already
rotated, already contiguous), and prints the ratios (medians of ``--repeats``). Default tokens: 390 per latent frame
(a 240 x 416 video) so the CPU finishes in minutes; ``--tokens 1560`` is 480 x 832.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import context_forcing_core.memory.attend as attend_module
import context_forcing_core.memory.slow_fast as slow_fast_module
from context_forcing_core.memory.config import context_forcing
from context_forcing_core.memory.slow_fast import SlowFastMemory
from context_forcing_core.models.attention import sdpa
from context_forcing_core.models.config import model_preset

MOVES = {"cat", "stack", "index_select", "gather", "clone", "copy_", "index_copy", "index_copy_", "slice_scatter",
         "_to_copy", "index"}
SYNCS = {"_local_scalar_dense", "nonzero", "is_nonzero", "lift_fresh", "lift_fresh_copy"}
DENOISING_PASSES = 4


class OpCounter(TorchDispatchMode):
    """Counts, for every aten op run inside it: big data movement (bytes) and host syncs."""

    def __init__(self, big: int) -> None:
        super().__init__()
        self.big, self.moved, self.syncs = big, 0, Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        if name in SYNCS:
            self.syncs[name] += 1
        if name in MOVES and isinstance(out, torch.Tensor) and out.numel() > self.big:
            self.moved += out.numel() * out.element_size()
        return out


class RotationCounter:
    """Wraps ``apply_rope`` where the memory calls it and counts the rows it rotates."""

    def __init__(self) -> None:
        self.rows = 0
        self._orig = slow_fast_module.apply_rope

    def __enter__(self) -> RotationCounter:
        def counted(x, cos, sin):
            self.rows += x.shape[1]
            return self._orig(x, cos, sin)

        slow_fast_module.apply_rope = attend_module.apply_rope = counted
        return self

    def __exit__(self, *exc) -> None:
        slow_fast_module.apply_rope = attend_module.apply_rope = self._orig


def next_chunk(memory: SlowFastMemory) -> range:
    """The frames of the memory's next chunk."""
    return range(memory.next_frame, memory.next_frame + memory.config.chunk_frames)


def median_seconds(fn, repeats: int, device: torch.device) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls (synchronised on CUDA)."""
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        timings.append(time.perf_counter() - start)
    return statistics.median(timings)


def fill(memory: SlowFastMemory, chunks: int, shape: tuple[int, ...], grid, device, dtype) -> None:
    """Commit ``chunks`` chunks of random K/V (the memory's write, consolidation and eviction; no attention)."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    for _ in range(chunks):
        memory.begin_chunk(next_chunk(memory))
        for layer in range(memory.num_layers):
            k, v = (torch.randn(shape, generator=gen).to(device, dtype) for _ in range(2))
            memory.write(layer, k, v, grid)
        memory.end_chunk()


def chunk_passes(memory: SlowFastMemory, in_place: bool, qkv, grid) -> None:
    """One chunk: the denoising passes read, the last pass commits."""
    memory.begin_chunk(next_chunk(memory))
    for p in range(DENOISING_PASSES + 1):
        ctx = memory.attention(commit=p == DENOISING_PASSES, in_place=in_place)
        for layer in range(memory.num_layers):
            ctx.attend(layer, *qkv[layer], grid)
    memory.end_chunk()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=390, help="tokens per latent frame (1560 = 480 x 832)")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=12, help="heads of width 128 (Wan 1.3B: 12)")
    parser.add_argument("--chunks", type=int, default=32, help="chunks committed first (32: slow memory full)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    wan = dataclasses.replace(model_preset("wan2.1-t2v-1.3b"), num_layers=args.layers, num_heads=args.heads,
                              dim=128 * args.heads)
    cfg = context_forcing()
    rows = max(1, args.tokens // 26)
    grid = (cfg.chunk_frames, rows, args.tokens // rows)
    tokens = grid[1] * grid[2]
    shape = (1, cfg.chunk_frames * tokens, args.heads, 128)
    gen = torch.Generator().manual_seed(1)
    qkv = [[torch.randn(shape, generator=gen).to(device, dtype) for _ in range(3)] for _ in range(args.layers)]
    memories = {name: SlowFastMemory(cfg, wan) for name in ("in place", "read and concatenate")}
    for memory in memories.values():
        fill(memory, args.chunks, shape, grid, device, dtype)
    history = len(memories["in place"].layers[0].occupied())
    print(f"Wan 1.3B head layout ({args.heads} x 128), {args.layers} layers, {tokens} tokens per latent frame, "
          f"{history} cached frames + a {cfg.chunk_frames}-frame chunk ({(history + cfg.chunk_frames) * tokens} keys), "
          f"{args.device} {args.dtype}, {torch.get_num_threads()} threads")

    chunk_bytes = shape[1] * shape[2] * shape[3] * torch.finfo(dtype).bits // 8
    print("\nper chunk of 5 passes, all layers | bytes beyond the chunk | history rotations | host syncs")
    counted = {}
    for name, memory in memories.items():
        in_place = name == "in place"
        with RotationCounter() as rot, OpCounter(big=shape[1] * shape[2] * shape[3]) as ops:
            chunk_passes(memory, in_place, qkv, grid)
        own = 2 * shape[1] * (DENOISING_PASSES + 1) * args.layers  # each pass rotates the chunk's q and k
        rotations = (rot.rows - own) / (history * tokens * args.layers)
        counted[name] = (ops.moved, rotations, sum(ops.syncs.values()))
        print(f"{name:>21} | {ops.moved / 2**20:10.1f} MB ({ops.moved / chunk_bytes:5.1f} chunk K's) | "
              f"{rotations:4.1f} | {sum(ops.syncs.values())} {dict(ops.syncs) or ''}")
    print("(the in-place path's bytes are the once-per-chunk compaction and rotation; per pass after the first: "
          "none, see below)")

    print("\nper pass after the first, one layer | bytes beyond the chunk | host syncs")
    for name, memory in memories.items():
        memory.begin_chunk(next_chunk(memory))

        def one_pass(memory=memory, in_place=name == "in place") -> None:
            memory.attention(in_place=in_place).attend(0, *qkv[0], grid)

        one_pass()  # the chunk's first pass
        with OpCounter(big=shape[1] * shape[2] * shape[3]) as ops:
            one_pass()
        print(f"{name:>21} | {ops.moved / 2**20:10.1f} MB | {sum(ops.syncs.values())}")
        counted[name] += (median_seconds(one_pass, args.repeats, device),)
        memory._pending = None  # leave the chunk uncommitted: the state is not reused

    keys = torch.randn(1, (history + cfg.chunk_frames) * tokens, args.heads, 128, generator=gen).to(device, dtype)
    values = torch.randn_like(keys)
    bare = median_seconds(lambda: sdpa(qkv[0][0], keys, values), args.repeats, device)
    print(f"\none pass, one layer (median of {args.repeats}): bare SDPA over the same keys {bare * 1e3:.1f} ms")
    for name in memories:
        t = counted[name][3]
        print(f"{name:>21}: {t * 1e3:8.1f} ms, ratio to bare SDPA {t / bare:.3f}")


if __name__ == "__main__":
    main()
