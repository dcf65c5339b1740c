"""ODE-regression pairs: teacher trajectories generated once and cached on disk as safetensors shards.

A shard holds one batch, in the teacher's dtype: ``states`` (N, K, C, F, H, W) at the student's K timesteps,
``x0`` (N, C, F, H, W) and the prompt ``text`` states (N, L, D). Shards are written atomically and skipped when
present, so an interrupted generation resumes where it stopped; shard i draws its noise from seed (seed, i), so the
cache does not depend on how often it was interrupted. Training reads the pairs of each batch from disk.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor
from torch.utils.data import Dataset

from context_forcing_core.atomic import atomic_path
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
        stored = teacher.dtype  # bfloat16 for a 1.3B teacher halves the cache
        tensors = {"states": traj.states.to("cpu", stored), "x0": traj.x0.to("cpu", stored), "text": text.to("cpu", stored)}
        meta = {"timesteps": ",".join(f"{t:.6f}" for t in traj.timesteps)}
        with atomic_path(path) as tmp:
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=meta)
        print(f"ode pairs: {first + n}/{num_pairs} ({time.perf_counter() - start:.0f} s)", flush=True)
    return paths


class OdePairs(Dataset):
    """The cached pairs, read from disk per batch (a 1.3B run's pairs do not fit in memory); item i -> batch([i])."""

    def __init__(self, paths: list[Path]) -> None:
        """Index and validate the shards (shapes and metadata only; no tensor is read)."""
        if not paths:
            raise ValueError("no ODE pair shards given")
        self.paths, self.starts = list(paths), [0]
        timesteps = None
        for path in self.paths:
            with safe_open(str(path), "pt") as f:
                meta, names = f.metadata() or {}, set(f.keys())
                if "timesteps" not in meta:
                    raise ValueError(f"{path}: metadata has no 'timesteps' (not an ODE pair shard)")
                missing = [k for k in KEYS if k not in names]
                if missing:
                    raise ValueError(f"{path}: missing key {missing[0]!r} (an ODE pair shard has {', '.join(KEYS)})")
                states, x0, text = (tuple(f.get_slice(k).get_shape()) for k in KEYS)
            if states[0] != x0[0] or text[0] != x0[0] or states[2:] != x0[1:]:
                raise ValueError(f"{path}: key 'states' {states} does not match 'x0' {x0} and 'text' {text}")
            steps = tuple(float(v) for v in meta["timesteps"].split(","))
            if timesteps is not None and steps != timesteps:
                raise ValueError(f"{path}: timesteps {steps} differ from the first shard's {timesteps}")
            timesteps = steps
            self.starts.append(self.starts[-1] + x0[0])
        self.timesteps: tuple[float, ...] = timesteps or ()

    def __len__(self) -> int:
        """Number of pairs."""
        return self.starts[-1]

    def _read(self, index: int) -> dict[str, Tensor]:
        shard = bisect.bisect_right(self.starts, index) - 1
        row = index - self.starts[shard]
        with safe_open(str(self.paths[shard]), "pt") as f:
            return {k: f.get_slice(k)[row : row + 1].float() for k in KEYS}

    def __getitem__(self, index: int) -> tuple[OdeTrajectory, Tensor]:
        return self.batch([index])

    def batch(self, indices: list[int], device: torch.device | str = "cpu") -> tuple[OdeTrajectory, Tensor]:
        """A batch of pairs on ``device``: the trajectory (B, K, C, F, H, W) / (B, C, F, H, W) and (B, L, D) text,
        float32 whatever the stored dtype.
        """
        rows = [self._read(range(len(self))[i]) for i in indices]
        states, x0, text = (torch.cat([r[k] for r in rows]).to(device) for k in KEYS)
        return OdeTrajectory(states=states, timesteps=self.timesteps, x0=x0), text
