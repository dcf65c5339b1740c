"""Toy-world speed: building training clips, and a 60-s video with all oracle metrics.

Run: python -m benchmarks.toyworld_speed [--clips 1000] [--frames 21]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from context_forcing_core.toyworld.camera import CameraSpec, camera_path, render_video
from context_forcing_core.toyworld.dataset import ToyClipDataset
from context_forcing_core.toyworld.metrics import drift, motion_fidelity, revisit_curve
from context_forcing_core.toyworld.world import SceneSpec, render_panorama


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--frames", type=int, default=21)
    args = parser.parse_args()
    torch.set_num_threads(1)

    data = ToyClipDataset(args.clips, num_latent_frames=args.frames, seed=0)
    t0 = time.perf_counter()
    for i in range(len(data)):
        data[i]
    build = time.perf_counter() - t0
    print(f"{args.clips} clips of {args.frames} latent frames (render + encode + text): {build:.2f} s "
          f"({build / args.clips * 1e3:.1f} ms per clip)")

    render_s, metric_s = [], []
    for seed in range(5):
        t0 = time.perf_counter()
        pano = render_panorama(SceneSpec(palette="forest", seed=seed))
        offsets = camera_path(CameraSpec(motion="pan_with_pauses", seed=seed), 240, pano.shape[-1])
        frames = render_video(pano, offsets)
        t1 = time.perf_counter()
        revisit_curve(frames)
        motion_fidelity(frames, offsets)
        drift(frames, "forest")
        t2 = time.perf_counter()
        render_s.append(t1 - t0)
        metric_s.append(t2 - t1)
    print(f"60-s video (240 frames): render {statistics.median(render_s) * 1e3:.1f} ms, revisit curve + motion "
          f"fidelity + drift {statistics.median(metric_s) * 1e3:.1f} ms (median of 5)")


if __name__ == "__main__":
    main()
