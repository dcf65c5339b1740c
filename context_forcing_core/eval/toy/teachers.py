"""Sample quality of toy teachers: guided Euler ODE samples of held-out prompts against the toy world's oracle.

    python -m context_forcing_core.eval.toy.teachers --teacher t6k=RUN/step_006000/student_ema.safetensors --teacher t14k=...

Per teacher: 21-frame samples of ``--videos`` held-out prompts (24-step guided Euler ODE, guidance 3, the same noise
for every teacher), mean distance of every pixel to the prompt's palette, sharpness (mean neighbour difference),
how many pass motion fidelity, the shift residual (how far each frame is from its predecessor moved rigidly: 0 for a
pan, and when it is large the motion-fidelity shifts are guesses), the flow's dependence on the text
(|v_cond - v_uncond| at sigma 0.5 relative to |v_cond|), and the text pathway's use: at sigma ~1 only the prompt
tells the colours, so the mean colour of the predicted x0 from pure noise should match the clip's (mean absolute RGB
error). A ground-truth row shows the world's own values. ``context gain`` asks whether the teacher ties frames
together: the x0 error of the middle frame at sigma 0.9 with the clip's other frames noised as usual, against the
same with every other frame pure noise (1 - error with / error without; 0 = the frames are denoised independently).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from context_forcing_core.diffusion.schedule import add_noise, x0_from_flow
from context_forcing_core.models.loading import load_model
from context_forcing_core.objectives.ode import teacher_trajectory
from context_forcing_core.toyworld.camera import camera_path
from context_forcing_core.toyworld.dataset import ToyClipDataset
from context_forcing_core.toyworld.metrics import drift, motion_fidelity


def _row(name: str, video: np.ndarray, data: ToyClipDataset, specs: list, text_effect: float | None = None,
         colour_error: float | None = None, context_gain: float | None = None) -> str:
    pal, sharp, resid, ok = [], [], [], 0
    for i, (prompt, scene, camera) in enumerate(specs):
        d = drift(video[i], prompt.palette)
        pal.append(d.palette_distance.mean())
        sharp.append(d.sharpness.mean())
        motion = motion_fidelity(video[i], camera_path(camera, video.shape[1], scene.width))
        ok += motion.ok
        resid.append(motion.shift_residual)
    extra = "" if text_effect is None else f"{text_effect:11.4f} | {colour_error:14.3f} | {context_gain:12.3f}"
    return (f"{name:>14s} | {np.mean(pal):9.3f} | {np.mean(sharp):9.3f} | {ok}/{len(specs)}       | "
            f"{np.mean(resid):11.4f} | {extra}")


def _context_gain(teacher, data: ToyClipDataset, clips: list, text: torch.Tensor, seed: int, sigma: float = 0.9
                  ) -> float:
    """1 - (middle frame's x0 error with its clip around it) / (the same with every other frame pure noise)."""
    x0 = torch.stack([c.latents for c in clips])  # (B, 48, F, 8, 8)
    gen = torch.Generator().manual_seed(seed + 1)
    noisy = add_noise(x0, torch.randn(x0.shape, generator=gen), sigma)
    alone = torch.randn(x0.shape, generator=gen)
    mid = x0.shape[2] // 2
    alone[:, :, mid] = noisy[:, :, mid]
    t = torch.full(x0.shape[:1], 1000 * sigma)
    truth = data.codec.decode(x0)[:, mid]
    errors = []
    for inp in (noisy, alone):
        pred = data.codec.decode(x0_from_flow(inp, teacher(inp, t, teacher.encode_text(text)), sigma))[:, mid]
        errors.append(float((pred - truth).abs().mean()))
    return 1 - errors[0] / errors[1]


def main(argv: list[str] | None = None) -> None:
    """Command line: print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", action="append", required=True, help="NAME=PATH (repeat)")
    parser.add_argument("--videos", type=int, default=6)
    parser.add_argument("--frames", type=int, default=21)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    data = ToyClipDataset(args.videos, num_latent_frames=args.frames, seed=20_000 + args.seed)
    specs = [data.spec(i) for i in range(args.videos)]
    clips = [data[i] for i in range(args.videos)]
    text = torch.stack([c.text for c in clips])  # (B, 16, 4096)
    uncond = data.encoder.encode([""]).expand_as(text)  # the empty prompt (all-zero rows)
    noise = torch.randn((args.videos, 48, args.frames, 8, 8), generator=torch.Generator().manual_seed(args.seed))
    gt = data.codec.decode(torch.stack([c.latents for c in clips])).clamp(0, 1).numpy()
    gt_colour = gt.mean(axis=(1, 3, 4))  # (B, 3) mean RGB of every clip
    print("       teacher | palette d | sharpness | motion ok | shift resid | text effect | colour err s=1 | context gain")
    print(_row("ground truth", gt, data, specs))
    for item in args.teacher:
        name, path = item.split("=", 1)
        teacher = load_model(path).eval()
        with torch.no_grad():
            x0 = teacher_trajectory(teacher, noise, text, uncond).x0
            probe = 0.5 * (noise + x0)  # (B, C, F, H, W) at sigma 0.5
            t = torch.full((args.videos, args.frames), 500.0)
            v_c = teacher(probe, t, teacher.encode_text(text))
            v_u = teacher(probe, t, teacher.encode_text(uncond))
            pure = teacher(noise, torch.full((args.videos, args.frames), 999.0), teacher.encode_text(text))
            gain = _context_gain(teacher, data, clips, text, args.seed)
        effect = float((v_c - v_u).norm() / v_c.norm())
        colour = data.codec.decode(x0_from_flow(noise, pure, 0.999)).clamp(0, 1).numpy().mean(axis=(1, 3, 4))
        error = float(np.abs(colour - gt_colour).mean())
        print(_row(name, data.codec.decode(x0).clamp(0, 1).numpy(), data, specs, effect, error, gain))


if __name__ == "__main__":
    main()
