"""ODE-regression pairs: teacher trajectories generated once and cached on disk as safetensors shards.

A shard holds one batch: ``states`` (N, K, C, F, H, W) at the student's K timesteps, ``x0`` (N, C, F, H, W) and the
prompt ``text`` states (N, L, D). Shards are written atomically and skipped when present, so an interrupted
generation resumes where it stopped; shard i draws its noise from seed (seed, i), so the cache does not depend on
how often it was interrupted.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor
from torch.utils.data import Dataset

from context_forcing_core.models.wan import WanModel
from context_forcing_core.objectives.ode import OdeTrajectory, teacher_trajectory

SHARD = "shard_{:05d}.safetensors"
KEYS = ("states", "x0", "text")


def generate_pairs(
    teacher: WanModel,
    prompts: Callable[[int], Tensor],
    uncond: Tensor,
    out_dir: Path,
    *,
    num_pairs: int,
    batch_size: int,
    shape: tuple[int, int, int, int],
    timesteps_guidance: tuple[int, float],
    seed: int,
) -> list[Path]:
    """Write ceil(num_pairs / batch_size) shards of teacher ODE pairs into ``out_dir`` (existing shards are kept).

    Args:
        teacher: bidirectional teacher (eval mode).
        prompts: pair index -> (L, D) prompt states.
        uncond: (1, L, D) empty-prompt states.
        out_dir: shard folder.
        num_pairs: pairs in all.
        batch_size: pairs per shard (one teacher batch).
        shape: latent (C, F, H, W) of one video.
        timesteps_guidance: Euler steps and guidance scale of the teacher's ODE.
        seed: base seed of the noise.

    Returns:
        The shard paths, in order.

    """
    out_dir.mkdir(parents=True, exist_ok=True)
    num_steps, guidance = timesteps_guidance
    paths, start = [], time.perf_counter()
    for shard, first in enumerate(range(0, num_pairs, batch_size)):
        path = out_dir / SHARD.format(shard)
        paths.append(path)
        if path.exists():
            continue
        n = min(batch_size, num_pairs - first)
        text = torch.stack([prompts(first + i) for i in range(n)])  # (n, L, D)
        g = torch.Generator().manual_seed(seed * 1_000_003 + shard)
        noise = torch.randn((n, *shape), generator=g)
        traj = teacher_trajectory(teacher, noise, text, uncond.expand(n, -1, -1), num_steps=num_steps, guidance=guidance)
        tensors = {"states": traj.states.cpu(), "x0": traj.x0.cpu(), "text": text.float().cpu()}
        meta = {"timesteps": ",".join(f"{t:.6f}" for t in traj.timesteps)}
        tmp = path.with_suffix(".tmp")
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
        os.replace(tmp, path)
        print(f"ode pairs: {first + n}/{num_pairs} ({time.perf_counter() - start:.0f} s)", flush=True)
    return paths


class OdePairs(Dataset):
    """Every cached pair in memory; item i -> (OdeTrajectory of one pair, (L, D) text)."""

    def __init__(self, paths: list[Path]) -> None:
        """Load and validate the shards."""
        if not paths:
            raise ValueError("no ODE pair shards given")
        parts: dict[str, list[Tensor]] = {k: [] for k in KEYS}
        timesteps = None
        for path in paths:
            with safe_open(str(path), "pt") as f:  # one read: tensors and metadata
                data = {k: f.get_tensor(k) for k in f.keys()}
                meta = f.metadata() or {}
            if "timesteps" not in meta:
                raise ValueError(f"{path}: metadata has no 'timesteps' (not an ODE pair shard)")
            steps = tuple(float(v) for v in meta["timesteps"].split(","))
            missing = [k for k in KEYS if k not in data]
            if missing:
                raise ValueError(f"{path}: missing key {missing[0]!r} (an ODE pair shard has {', '.join(KEYS)})")
            states, x0, text = data["states"], data["x0"], data["text"]
            if states.shape[0] != x0.shape[0] or text.shape[0] != x0.shape[0] or states.shape[2:] != x0.shape[1:]:
                raise ValueError(f"{path}: key 'states' {tuple(data['states'].shape)} does not match "
                                 f"'x0' {tuple(data['x0'].shape)} and 'text' {tuple(data['text'].shape)}")
            if timesteps is not None and steps != timesteps:
                raise ValueError(f"{path}: timesteps {steps} differ from the first shard's {timesteps}")
            timesteps = steps
            for k in KEYS:
                parts[k].append(data[k])
        self.timesteps: tuple[float, ...] = timesteps or ()
        self.states, self.x0, self.text = (torch.cat(parts[k]) for k in KEYS)

    def __len__(self) -> int:
        """Number of pairs."""
        return self.x0.shape[0]

    def batch(self, indices: list[int], device: torch.device | str = "cpu") -> tuple[OdeTrajectory, Tensor]:
        """A batch of pairs on ``device``: the trajectory (B, K, C, F, H, W) / (B, C, F, H, W) and (B, L, D) text."""
        idx = torch.tensor(indices, dtype=torch.long)
        traj = OdeTrajectory(states=self.states[idx].to(device), timesteps=self.timesteps, x0=self.x0[idx].to(device))
        return traj, self.text[idx].to(device)
