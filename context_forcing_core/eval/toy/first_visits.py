"""The lower-level task first: are a scene-world student's first visits library pictures, and are they varied?

    python -m context_forcing_core.eval.toy.first_visits --student NAME=FILE [--student ...] [--rounds 4]

For every scene prompt and ``--rounds`` held-out noises (seed 7, never a training seed), one chunk with nothing in
memory (a first visit) from the student's few-step sampler, and from the same sampler run on the exact teacher's
posterior mean E[x0 | x_t, prompt] (the denoiser a perfect student would have learned). Scored in latent units:
library distance (mean squared distance of each frame to the nearest of the prompt's pictures; 0 = a picture)
beside the prompt's wrong-pick distance (between two of its pictures), and how often each of the K pictures is the
chunk's nearest (a student that always draws the same one would make every return look remembered): the chance
recall is the probability that two independent first visits of a prompt pick the same picture (sum of the squared
pick shares per prompt, averaged over prompts; 1 / K for uniform invention, 1 for a student that always draws the
same one). Use ``--rounds`` of 16 or more for it: with few rounds it is biased upwards.

:func:`score_first_visits` is the one first-visit scorer: the training probes (``training/probes/``) score their
samplers with it too.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from context_forcing_core.diffusion.sampler import sample_chunk
from context_forcing_core.diffusion.schedule import DEFAULT_SHIFT, DEFAULT_STEPS, warp_timesteps
from context_forcing_core.memory.config import MemoryConfig
from context_forcing_core.models.loading import load_model
from context_forcing_core.toyworld.exact_teacher import ExactTeacher
from context_forcing_core.toyworld.scenes import LIBRARY_SIZE, all_scene_prompts, library_latents

EVAL_SEED = 7
"""Seed of the held-out first-visit noise (never a training seed)."""

FlowFn = Callable[[Tensor, Tensor, Tensor], Tensor]
"""(x_t (B, C, f, H, W), timesteps (B, f), text (B, L, D)) -> flow."""
Sampler = Callable[[Tensor, torch.Generator], Tensor]
"""(noise (P, C, f, H, W), generator) -> the first-visit chunks (P, C, f, H, W) sampled from that noise, one per
prompt (the generator is the scorer's, for samplers that draw fresh noise)."""


def picture_distances(chunks: Tensor, pictures: Tensor) -> Tensor:
    """(B, f, K) mean squared distance of every frame of ``chunks`` (B, C, f, H, W) to each of its prompt's
    ``pictures`` (B, K, C, H, W).
    """
    return ((chunks[:, :, :, None] - pictures.permute(0, 2, 1, 3, 4)[:, :, None]) ** 2).mean((1, 4, 5))


@dataclass(kw_only=True, slots=True, frozen=True)
class FirstVisitScore:
    """How first-visit chunks of every prompt relate to the prompt's library (latent units)."""

    library_distance: float
    """Mean over prompts, rounds and frames of the squared distance of a frame to its nearest library picture
    (0 = every frame a picture)."""
    picks: list[int]
    """(K,) how often each picture index is a chunk's nearest (frame distances averaged over the chunk), over
    prompts and rounds."""
    chance_recall: float
    """Probability that two independent first visits of a prompt pick the same picture: the sum of the squared
    pick shares per prompt, averaged over prompts (1 / K for uniform invention, 1 for always the same picture;
    biased upwards with few rounds)."""


def score_first_visits(sample: Sampler, pictures: Tensor, *, rounds: int, chunk_frames: int | None = None,
                       seed: int = EVAL_SEED) -> FirstVisitScore:
    """Score ``rounds`` first visits of every prompt, each from fresh held-out noise.

    Args:
        sample: the sampler under test (see :data:`Sampler`).
        pictures: (P, K, C, H, W) library latents of the P prompts.
        rounds: noises per prompt.
        chunk_frames: frames per chunk (default: the memory's, ``MemoryConfig().chunk_frames``).
        seed: seed of the noise generator (also handed to ``sample``).

    """
    gen = torch.Generator().manual_seed(seed)
    frames = MemoryConfig().chunk_frames if chunk_frames is None else chunk_frames
    shape = (pictures.shape[0], pictures.shape[2], frames, *pictures.shape[3:])
    dist, picks = [], []
    with torch.no_grad():
        for _ in range(rounds):
            d = picture_distances(sample(torch.randn(shape, generator=gen), gen), pictures)  # (P, f, K)
            dist.append(d.min(-1).values.mean())
            picks.append(d.mean(1).argmin(-1))
    pick = torch.stack(picks, dim=1)  # (P, rounds) nearest picture of each chunk
    k = pictures.shape[1]
    share = torch.stack([torch.bincount(row, minlength=k) for row in pick]).float() / rounds  # (P, K)
    return FirstVisitScore(library_distance=float(torch.stack(dist).mean()),
                           picks=torch.bincount(pick.flatten(), minlength=k).tolist(),
                           chance_recall=float((share**2).sum(1).mean()))


def few_step_sampler(flow: FlowFn, text: Tensor) -> Sampler:
    """The student's stochastic few-step sampler (:func:`~context_forcing_core.diffusion.sampler.sample_chunk`,
    default steps and shift) on ``flow`` with the prompts' ``text`` (P, L, D) bound.
    """
    timesteps = warp_timesteps(DEFAULT_STEPS, DEFAULT_SHIFT)
    return lambda noise, gen: sample_chunk(lambda x, t: flow(x, t, text), noise, timesteps, generator=gen)


def wrong_pick(pictures: Tensor) -> float:
    """Mean squared distance between two different pictures of a prompt, over prompts and pairs."""
    k = pictures.shape[1]
    pairs = [((pictures[:, i] - pictures[:, j]) ** 2).mean((1, 2, 3)) for i in range(k) for j in range(k) if i != j]
    return float(torch.stack(pairs).mean())


def main(argv: list[str] | None = None) -> int:
    """Command line: print one line per row; 0 on success."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", action="append", default=[], help="NAME=checkpoint (repeat)")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    prompts = all_scene_prompts()
    pictures = torch.stack([library_latents(p) for p in prompts])  # (P, K, C, H, W)
    teacher = ExactTeacher(prompts)
    text = teacher.encoder.encode([p.text for p in prompts])  # (P, L, D): the toy encoder the students use
    rows: dict[str, FlowFn] = {"exact posterior mean (reference)": lambda x, t, txt: teacher(x, t, txt)}
    for item in args.student:
        name, sep, path = item.partition("=")
        if not sep:
            parser.error(f"--student takes NAME=FILE, got {item!r}")
        model = load_model(path, dtype=torch.float32).eval()
        if (model.config.text_dim, model.config.text_len) != (teacher.encoder.width, teacher.encoder.max_tokens):
            parser.error(f"{path}: its text states are not the toy encoder's (width x tokens)")
        rows[name] = lambda x, t, txt, m=model: m(x, t, m.encode_text(txt), attention="block_causal")
    print(f"first visits: {len(prompts)} prompts x {args.rounds} held-out noises; wrong-pick distance "
          f"{wrong_pick(pictures):.3f} (latent units); chance picks {100 / LIBRARY_SIZE:.0f} % each")
    for name, flow in rows.items():
        s = score_first_visits(few_step_sampler(flow, text), pictures, rounds=args.rounds)
        print(f"{name}: library distance {s.library_distance:.3f}, picks {s.picks}, chance recall "
              f"{s.chance_recall:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
