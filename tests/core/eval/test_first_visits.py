"""eval.toy.first_visits: distances and the scorer against hand-computed cases; the exact posterior mean's first
visits are pictures."""

from __future__ import annotations

import torch

from context_forcing_core.eval.toy.first_visits import (
    EVAL_SEED,
    few_step_sampler,
    main,
    picture_distances,
    score_first_visits,
    wrong_pick,
)
from context_forcing_core.toyworld.exact_teacher import ExactTeacher
from context_forcing_core.toyworld.scenes import ScenePrompt, library_latents


def test_picture_distances_and_wrong_pick_by_hand():
    pictures = torch.zeros(1, 2, 1, 1, 2)
    pictures[0, 1] = torch.tensor([[[2.0, 0.0]]])  # picture 1 differs by 2 in one of two elements
    chunk = torch.zeros(1, 1, 3, 1, 2)
    chunk[0, 0, 2] = torch.tensor([[1.0, 1.0]])
    d = picture_distances(chunk, pictures)  # (1, 3, 2)
    torch.testing.assert_close(d[0], torch.tensor([[0.0, 2.0], [0.0, 2.0], [1.0, 1.0]]))
    assert wrong_pick(pictures) == 2.0


def test_exact_posterior_mean_first_visits_are_pictures(capsys):
    prompts = [ScenePrompt(palette="ocean"), ScenePrompt(palette="snow", style="bands")]
    teacher = ExactTeacher(prompts)
    text = teacher.encoder.encode([p.text for p in prompts])
    pictures = torch.stack([library_latents(p) for p in prompts])
    s = score_first_visits(few_step_sampler(lambda x, t, txt: teacher(x, t, txt), text), pictures, rounds=3)
    assert s.library_distance < 1e-3 and sum(s.picks) == 6
    assert 1 / 3 <= s.chance_recall <= 1  # 3 rounds: shares are multiples of 1/3
    mean = pictures.mean(1)[:, :, None]  # (P, C, 1, H, W): a denoiser that always returns the prompt's blend
    blur = score_first_visits(few_step_sampler(lambda x, t, txt: (x - mean) / (t[:, None, :, None, None] / 1000), text),
                              pictures, rounds=1)
    assert blur.library_distance > 0.1 * wrong_pick(pictures)
    assert main(["--rounds", "1"]) == 0 and "library distance 0.000" in capsys.readouterr().out


def test_the_scorer_by_hand():
    pictures = torch.zeros(2, 2, 1, 1, 1)
    pictures[:, 1] = 1.0  # picture 1 of both prompts is all ones
    seen = []

    def always_picture_one(noise, gen):  # noise (P, C, f, H, W) = (2, 1, 3, 1, 1)
        seen.append((tuple(noise.shape), gen))
        return torch.ones_like(noise)

    s = score_first_visits(always_picture_one, pictures, rounds=2)
    assert s.library_distance == 0 and s.picks == [0, 4] and s.chance_recall == 1.0
    assert [shape for shape, _ in seen] == [(2, 1, 3, 1, 1)] * 2 and seen[0][1] is seen[1][1]

    def half_way(noise, gen):  # every frame 0.5 from both pictures: nearest is picture 0 (ties go to the first)
        return torch.full_like(noise, 0.5)

    s = score_first_visits(half_way, pictures, rounds=1, chunk_frames=1)
    assert s.library_distance == 0.25 and s.picks == [2, 0]
    first = torch.randn((2, 1, 3, 1, 1), generator=torch.Generator().manual_seed(EVAL_SEED))
    score_first_visits(lambda noise, gen: seen.append(noise) or noise, pictures, rounds=1)
    assert torch.equal(seen[-1], first)  # the held-out noise
