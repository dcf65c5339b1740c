"""Peak memory of decoding a long Wan rollout: core VAE Decode against the pack's streaming decode.

Run with the Python of a provisioned ComfyUI (it imports ``comfy``), from the repository root:

    ~/.cache/context-forcing/comfyui-0.3.75/venv/bin/python -m benchmarks.stream_decode [--seconds 20 60]
        [--size 16 32] [--dim 96]

A randomly initialised Wan 2.1 VAE of the full architecture (``--dim 96`` as the released one; ComfyUI's own
``WanVAE`` class, built through ``comfy.sd.VAE`` as Load VAE does) decodes random latents of each length at a
reduced resolution on CPU, each case in a fresh process: **core** is ``VAE.decode`` on the whole video (what VAE
Decode runs), **stream** is the Streaming Decode node's path (one latent frame at a time into an mp4), both under
``torch.inference_mode`` as ComfyUI runs nodes. Peak memory is the resident set sampled every 5 ms during the decode,
above the resident set just before it; each case runs with ``MALLOC_MMAP_THRESHOLD_=65536`` so that glibc hands freed
blocks back at once and the resident set follows live memory (with glibc's default, freed heap memory stays resident
and the first decode of a process reads higher). Core VAE Decode keeps memory alive per latent frame (~45 MB at the
default 16 x 32 pixels, ~125 MB at 32 x 48, ComfyUI 0.3.75's ``WanVAE.decode``), so the default size keeps its
60-s case within 24 GB of RAM. The seam error is the
largest pixel difference between the two decodes of the shortest length (in [0, 1] units; 0 when streaming carries
the VAE's feature cache exactly). ``--write-vae FILE --dim D`` only writes such a VAE (the real-server test uses it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _comfy_on_path() -> None:
    sys.path.insert(0, str(REPO))
    from tools.comfy_server import provision

    sys.path.append(str(provision()))  # after the repository: "nodes" is the pack's, not ComfyUI's nodes.py
    sys.argv = [sys.argv[0], "--cpu"]  # ComfyUI's own flags, parsed on import of comfy.model_management
    import comfy.options

    comfy.options.enable_args_parsing()


def random_wan_vae(dim: int, seed: int = 0) -> dict:
    """State dict of a Wan 2.1 VAE (ComfyUI's class) with every parameter drawn, output scaled to about [-1, 1]."""
    import torch
    from comfy.ldm.wan.vae import WanVAE

    torch.manual_seed(seed)
    vae = WanVAE(dim=dim, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                 temperal_downsample=[False, True, True])
    with torch.no_grad():  # comfy.ops layers skip their init (torch.empty)
        for name, p in vae.named_parameters():
            if p.ndim > 1:
                p.normal_(0, p[0].numel() ** -0.5)  # fan-in scaling
            else:
                p.copy_(1 + 0.1 * torch.randn_like(p) if name.endswith("gamma") else 0.1 * torch.randn_like(p))
        out = vae.decode(torch.randn(1, 16, 3, 4, 6))  # (1, 3, 9, 32, 48); the output is linear in the last conv
        head, scale = vae.decoder.head[-1], 2 * out.std()
        head.weight.div_(scale)
        head.bias.sub_(out.mean(dim=(0, 2, 3, 4))).div_(scale)
    return {k: v.contiguous() for k, v in vae.state_dict().items()}


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _PeakSampler:
    def __init__(self) -> None:
        self.base, self.peak, self._stop = _rss(), 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss() - self.base)
            time.sleep(0.005)

    def __enter__(self) -> _PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss() - self.base)


def _case(mode: str, seconds: float, size: tuple[int, int], dim: int, compare: str | None) -> dict:
    """One decode in this process; returns its figures (and, with ``compare``, saves the float frames there)."""
    import comfy.sd
    import torch

    from context_forcing_core.stream_decode import Mp4Sink, stream_decode
    from context_forcing_core.student import WAN_FPS, WAN_LATENT_FRAMES_PER_SECOND
    from nodes.stream_decode import wan_frame_decoder

    torch.set_num_threads(1)
    torch.inference_mode().__enter__()  # as ComfyUI's executor runs every node (without it autograd keeps activations)
    vae = comfy.sd.VAE(sd=random_wan_vae(dim))
    frames = round(seconds * WAN_LATENT_FRAMES_PER_SECOND)
    h, w = size[0] // 8, size[1] // 8
    latents = torch.randn(1, 16, frames, h, w, generator=torch.Generator().manual_seed(1))
    vae.decode(latents[:, :, :2])  # warm-up: weights in place, allocator primed
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="cf-stream-bench-") as out_dir, _PeakSampler() as peak:
        if mode == "core":
            pixels = vae.decode(latents)  # (1, F', H, W, 3) in [0, 1], all frames at once
            written = pixels.shape[-4]
        else:
            sink = Mp4Sink(Path(out_dir) / "v.mp4", fps=WAN_FPS)
            _, written = stream_decode(latents, wan_frame_decoder(vae), sink)
    seconds_taken = time.perf_counter() - start
    if compare:
        if mode == "core":
            torch.save(pixels, compare)
        else:
            decoder, got = wan_frame_decoder(vae), []
            with torch.no_grad():
                for i in range(frames):
                    got.append(((decoder(latents[:, :, i:i + 1]).float() + 1) / 2).clamp(0, 1)[0].permute(1, 2, 3, 0))
            torch.save(torch.cat(got), compare)
    return {"mode": mode, "seconds": seconds, "frames": int(written), "peak_mb": peak.peak / 2**20,
            "wall_s": seconds_taken}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, nargs="+", default=[20.0, 60.0])
    parser.add_argument("--size", type=int, nargs=2, default=[16, 32], metavar=("HEIGHT", "WIDTH"))
    parser.add_argument("--dim", type=int, default=96, help="VAE width (96: Wan 2.1's)")
    parser.add_argument("--write-vae", type=Path, help="only write a random Wan 2.1 VAE of --dim to this file")
    parser.add_argument("--case", nargs=2, metavar=("MODE", "SECONDS"), help=argparse.SUPPRESS)
    parser.add_argument("--compare", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    _comfy_on_path()
    if args.write_vae:
        from safetensors.torch import save_file

        save_file(random_wan_vae(args.dim), str(args.write_vae))
        return
    if args.case:
        print(json.dumps(_case(args.case[0], float(args.case[1]), tuple(args.size), args.dim, args.compare)))
        return
    import torch

    rows, scratch = [], tempfile.TemporaryDirectory(prefix="cf-stream-bench-")
    tmp, shortest = Path(scratch.name), min(args.seconds)
    for seconds in args.seconds:
        for mode in ("core", "stream"):
            cmd = [sys.executable, "-m", "benchmarks.stream_decode", "--case", mode, str(seconds), "--size",
                   *map(str, args.size), "--dim", str(args.dim)]
            if seconds == shortest:
                cmd += ["--compare", str(tmp / f"{mode}.pt")]
            env = os.environ | {"MALLOC_MMAP_THRESHOLD_": str(64 * 1024)}  # freed blocks go back to the OS at once
            out = subprocess.run(cmd, cwd=REPO, check=True, stdout=subprocess.PIPE, text=True, env=env).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(f"{mode:>6} {seconds:5.0f} s: {rows[-1]['frames']} frames, peak +{rows[-1]['peak_mb']:.0f} MB, "
                  f"{rows[-1]['wall_s']:.0f} s", flush=True)
    seam = (torch.load(tmp / "core.pt") - torch.load(tmp / "stream.pt")).abs().max().item()
    scratch.cleanup()
    print(f"\nWan 2.1 VAE (dim {args.dim}, random), {args.size[0]}x{args.size[1]} px, CPU, 1 thread")
    print("| decode | " + " | ".join(f"{s:.0f} s: peak above start (MB)" for s in args.seconds) + " |")
    print("|---|" + "---|" * len(args.seconds))
    for mode, name in (("core", "core VAE Decode (whole video)"), ("stream", "Streaming Decode (mp4)")):
        cells = [f"{r['peak_mb']:.0f} ({r['frames']} frames, {r['wall_s']:.0f} s)" for r in rows if r["mode"] == mode]
        print(f"| {name} | " + " | ".join(cells) + " |")
    print(f"seam error (largest pixel difference, streamed vs whole, {shortest:.0f} s): {seam:.2e}")


if __name__ == "__main__":
    main()
