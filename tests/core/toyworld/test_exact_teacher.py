"""The exact teachers against brute-force posteriors on a tiny library, and what their samples do."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from context_forcing_core.diffusion.schedule import x0_from_flow
from context_forcing_core.objectives.dmd import score_with_context
from context_forcing_core.toyworld.exact_teacher import (
    TEXT_MATCH_TOLERANCE,
    ExactTeacher,
    balanced_reading,
    coupled_sample,
    exact_sample,
    reading,
)
from context_forcing_core.toyworld.scenes import ScenePrompt, library_latents
from context_forcing_core.toyworld.text import ToyTextEncoder

PROMPTS = [ScenePrompt(palette="ocean"), ScenePrompt(palette="neon", style="bands"), ScenePrompt(palette="snow")]


@pytest.fixture(scope="module")
def tiny():
    enc = ToyTextEncoder(width=32, max_tokens=8)
    return ExactTeacher(PROMPTS, encoder=enc, library_size=2, context_sigma=3.0), enc


def _log_normal(x: torch.Tensor, mean: torch.Tensor, sigma: float) -> float:
    """log N(x; mean, sigma^2 I) summed over every element, by the textbook formula."""
    d = (x.double() - mean.double()).flatten()
    return float(-0.5 * (d @ d) / sigma**2 - d.numel() * math.log(sigma * math.sqrt(2 * math.pi)))


def _brute_posterior(x_t, sigmas, prompt, context, teacher_pics, owners, context_sigma):
    """Enumerate the hypotheses: p(h) p(x_t | h) prod_c p(c | h), every term written out."""
    hyps = [h for h in range(len(owners)) if prompt is None or owners[h] == prompt]
    logs = []
    for h in hyps:
        lp = sum(_log_normal(x_t[:, f], (1 - s) * teacher_pics[h], s) for f, s in enumerate(sigmas))
        for c in range(0 if context is None else context.shape[1]):
            allowed = [a for a in range(len(owners)) if a == h or owners[a] != owners[h]]
            terms = [_log_normal(context[:, c], teacher_pics[a], context_sigma) for a in allowed]
            top = max(terms)
            lp += top + math.log(sum(math.exp(v - top) for v in terms) / len(allowed))
        logs.append(lp)
    logs = np.asarray(logs)
    w = np.exp(logs - logs.max())
    out = np.zeros(len(owners))
    out[hyps] = w / w.sum()
    return out


@pytest.mark.parametrize("case", range(4))
def test_posterior_equals_brute_force(tiny, case):
    teacher, enc = tiny
    gen = torch.Generator().manual_seed(case)
    pics = teacher.pictures  # (6, 48, 8, 8)
    owners = teacher.owner.tolist()
    prompt = [0, 1, None, 2][case]
    text = enc.encode([PROMPTS[prompt].text if prompt is not None else ""])
    truth = pics[[1, 2, 4, 5][case]]
    sigmas = [0.9, 0.97, 0.99][: 1 + case % 3]
    x_t = torch.stack([(1 - s) * truth + s * torch.randn(truth.shape, generator=gen) for s in sigmas], dim=1)
    context = None
    if case >= 1:  # a drifted copy of one picture and a frame of another prompt's scene
        context = torch.stack([pics[2 * (case % 3) + 1] + 0.5 * torch.randn(truth.shape, generator=gen),
                               pics[(2 * case + 2) % 6]], dim=1)
    got = teacher.posterior(x_t[None], torch.tensor([sigmas]), text,
                            None if context is None else context[None])[0].numpy()
    want = _brute_posterior(x_t, sigmas, prompt, context, pics, owners, teacher.context_sigma)
    np.testing.assert_allclose(got, want, atol=1e-8)


def _prompt_index_in_full(teacher, text):
    """What prompt_index stands for: every prompt compared over the whole embedding, the nearest within tolerance."""
    diff = (text[:, None] - teacher.embeddings.to(text.dtype)[None]).abs().flatten(2).amax(dim=2)  # (B, P)
    best, idx = diff.min(dim=1)
    return torch.where(best <= TEXT_MATCH_TOLERANCE, idx, torch.full_like(idx, -1))


def test_prompt_index_rules_prompts_out_on_a_few_columns_and_answers_as_the_whole_comparison():
    """A text equal to a prompt in the first columns but not beyond is no match; one within the tolerance
    everywhere is; a prompt listed twice is found at its first place; an unknown text is -1."""
    enc = ToyTextEncoder(width=256, max_tokens=8)
    teacher = ExactTeacher([*PROMPTS, PROMPTS[1]], encoder=enc, library_size=2)
    emb = teacher.embeddings  # (4, 8, 256)
    late = emb[0].clone()
    late[-1, -1] += 10 * TEXT_MATCH_TOLERANCE  # differs only in the last column of the last token
    gen = torch.Generator().manual_seed(0)
    near = emb[2] + 0.9 * TEXT_MATCH_TOLERANCE * (2 * torch.rand(emb[2].shape, generator=gen) - 1)
    text = torch.stack([emb[0], late, near, emb[1], enc.encode([""])[0], emb[3] + 1.0])
    got = teacher.prompt_index(text)
    assert got.tolist() == [0, -1, 2, 1, -1, -1]
    assert torch.equal(got, _prompt_index_in_full(teacher, text))
    for seed in range(3):  # random texts near random prompts: within the tolerance, or beyond it at one element
        gen = torch.Generator().manual_seed(seed)
        noisy = emb[torch.randint(4, (16,), generator=gen)]
        noisy = noisy + 0.9 * TEXT_MATCH_TOLERANCE * (2 * torch.rand(noisy.shape, generator=gen) - 1)
        for row in range(0, 16, 2):
            token, column = torch.randint(8, (1,), generator=gen), torch.randint(256, (1,), generator=gen)
            noisy[row, token, column] += 2 * TEXT_MATCH_TOLERANCE
        got = teacher.prompt_index(noisy)
        assert torch.equal(got, _prompt_index_in_full(teacher, noisy))
        assert (got[::2] == -1).all() and (got[1::2] >= 0).all()


def test_log_weights_of_named_prompts_are_the_unconditional_ones_kept_to_each_prompt(tiny):
    """Where every sample names a prompt only its pictures are scored; the same weights as the unconditional
    teacher's (every picture scored) outside which everything is -inf."""
    teacher, enc = tiny
    gen = torch.Generator().manual_seed(3)
    x_t = torch.randn(4, 48, 2, 8, 8, generator=gen)
    sigma = torch.tensor([[0.9, 0.95], [0.5, 0.6], [0.99, 0.99], [0.3, 0.8]])
    context = teacher.pictures[[0, 3, 5]].permute(1, 0, 2, 3)[None].repeat(4, 1, 1, 1, 1)
    idx = torch.tensor([0, 2, 1, 2])
    got = teacher.log_weights(x_t, sigma, idx, context)
    every = teacher.log_weights(x_t, sigma, torch.full((4,), -1), context)
    mine = teacher.owner[None] == idx[:, None]
    torch.testing.assert_close(got[mine], every[mine], rtol=1e-12, atol=1e-9)
    assert torch.isneginf(got[~mine]).all()


def _context_logp_over_every_pair(teacher, context):
    """log p(c | h) summed over frames as the module docstring writes it: for every h, the mean over a in A_h of
    N(c; mu_a, context_sigma^2 I), the distances computed directly."""
    mu = teacher.pictures.flatten(1).double()  # (N, D)
    c = context.double().transpose(1, 2).flatten(2)  # (B, Fc, D)
    ll = -((c[:, :, None] - mu[None, None]) ** 2).sum(-1) / (2 * teacher.context_sigma**2)  # (B, Fc, N)
    allow = teacher.allowed  # (N_h, N_a)
    masked = torch.where(allow[None, None], ll[:, :, None, :], torch.tensor(-math.inf, dtype=torch.float64))
    return (torch.logsumexp(masked, dim=-1) - allow.sum(1).double().log()).sum(1)


@pytest.mark.parametrize("sigma", [0.5, 3.0])
def test_context_logp_sums_by_prompt_as_over_every_allowed_picture(sigma):
    teacher = ExactTeacher(PROMPTS, encoder=ToyTextEncoder(width=32, max_tokens=8), library_size=2,
                           context_sigma=sigma)
    gen = torch.Generator().manual_seed(1)
    shown = teacher.pictures[torch.randint(6, (3 * 4,), generator=gen)].view(3, 4, 48, 8, 8).transpose(1, 2)
    context = shown + 0.4 * torch.randn(shown.shape, generator=gen)
    torch.testing.assert_close(teacher.context_logp(context), _context_logp_over_every_pair(teacher, context),
                               rtol=1e-12, atol=1e-9)


def test_the_kept_context_answer_and_library_follow_in_place_changes(tiny):
    teacher, enc = tiny
    gen = torch.Generator().manual_seed(2)
    context = teacher.pictures[:2].permute(1, 0, 2, 3)[None] + 0.1 * torch.randn(1, 48, 2, 8, 8, generator=gen)
    first = teacher.context_logp(context)
    assert teacher.context_logp(context) is first  # the same tensor, unchanged: kept
    assert teacher.context_logp(context.clone()) is not first  # another tensor: computed
    context[:, :, 0] = teacher.pictures[4]
    fresh = ExactTeacher(PROMPTS, encoder=enc, library_size=2, context_sigma=teacher.context_sigma)
    torch.testing.assert_close(teacher.context_logp(context), fresh.context_logp(context), rtol=0, atol=0)
    moved = ExactTeacher(PROMPTS, encoder=enc, library_size=2, context_sigma=teacher.context_sigma)
    x_t, sigma, text = torch.randn(1, 48, 1, 8, 8, generator=gen), torch.tensor([[0.5]]), enc.encode([PROMPTS[0].text])
    before = moved.x0(x_t, sigma, text)
    moved.pictures.mul_(2)
    after = moved.x0(x_t, sigma, text)
    assert not torch.allclose(before, after)
    moved.pictures.div_(2)
    torch.testing.assert_close(moved.x0(x_t, sigma, text), before, rtol=0, atol=0)


@pytest.mark.parametrize("with_context", [False, True])
def test_reading_is_the_posterior_of_frames_seen_at_the_context_noise(tiny, with_context):
    """reading(): the chunk's frames as observations N(mu_h, context_sigma^2), the context as usual; brute force."""
    teacher, enc = tiny
    pics = teacher.pictures
    gen = torch.Generator().manual_seed(5)
    frames = (0.6 * pics[2] + 0.4 * pics[3])[:, None].repeat(1, 2, 1, 1) + 0.5 * torch.randn(48, 2, 8, 8, generator=gen)
    context = pics[3][:, None] + 0.2 * torch.randn(48, 1, 8, 8, generator=gen) if with_context else None
    got = reading(teacher, frames[None], enc.encode([PROMPTS[1].text]), None if context is None else context[None])
    cs = teacher.context_sigma
    logs = []
    for h in (2, 3):  # prompt 1's pictures
        lp = sum(_log_normal(frames[:, f], pics[h], cs) for f in range(2))
        if context is not None:
            allowed = [a for a in range(6) if a == h or a // 2 != 1]
            terms = [_log_normal(context[:, 0], pics[a], cs) for a in allowed]
            lp += max(terms) + math.log(sum(math.exp(v - max(terms)) for v in terms) / len(allowed))
        logs.append(lp)
    w = np.exp(np.asarray(logs) - max(logs))
    w /= w.sum()
    want = (w[0] * pics[2].double() + w[1] * pics[3].double()).float()
    torch.testing.assert_close(got[0, :, 0], want, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got[0, :, 1], got[0, :, 0])
    assert (w[1] > 0.99) if with_context else (w[0] > 0.5)  # the context overrides the chunk's lean


def test_balanced_reading_shares_the_pictures_out_among_inventions_of_one_prompt(tiny):
    """Hand case (K = 2): four chunks of prompt 1 that must invent, three leaning to picture 2, one to picture 3; each
    picture goes to two of them, the chunk leaning least to 2 being the one moved. A chunk that need not invent is
    read as usual; an inventing chunk alone with its prompt gets the picture it is nearest to, not a blend."""
    teacher, enc = tiny
    pics = teacher.pictures  # (6, 48, 8, 8): prompt p owns pictures 2p, 2p + 1
    lean = [pics[2], 0.9 * pics[2] + 0.1 * pics[3], 0.7 * pics[2] + 0.3 * pics[3], pics[3],
            0.6 * pics[2] + 0.4 * pics[3], 0.8 * pics[4] + 0.2 * pics[5]]
    frames = torch.stack([x[:, None].repeat(1, 2, 1, 1) for x in lean])  # (6, 48, 2, 8, 8)
    text = enc.encode([PROMPTS[p].text for p in (1, 1, 1, 1, 1, 2)])
    invent = torch.tensor([True, True, True, True, False, True])
    got = balanced_reading(teacher, frames, text, None, invent)
    for row, picture in zip(range(4), (2, 2, 3, 3)):
        torch.testing.assert_close(got[row], pics[picture][:, None].expand(-1, 2, -1, -1))
    torch.testing.assert_close(got[4], reading(teacher, frames[4:5], text[4:5])[0])  # a blend: the posterior mean
    torch.testing.assert_close(got[5], pics[4][:, None].expand(-1, 2, -1, -1))
    same = balanced_reading(teacher, pics[2][None, :, None].repeat(4, 1, 1, 1, 1), text[:4], None, invent[:4])
    counts = [sum(torch.equal(same[r, :, 0], pics[h]) for r in range(4)) for h in (2, 3)]
    assert counts == [2, 2]  # four identical samples: the teacher's uniform choice, not four times picture 2
    with pytest.raises(ValueError, match="at most"):
        balanced_reading(teacher, frames[:1].repeat(9, 1, 1, 1, 1), text[:1].repeat(9, 1, 1), None,
                         torch.ones(9, dtype=torch.bool))


def test_coupled_sample_draws_the_teachers_prior_by_the_quantile_of_the_noise_sum(tiny):
    """Hand cases (K = 2): without context the picture is the prompt's first when the noise sums below 0 and its
    second above (each half the time); a context showing one of them gives it whatever the noise; a context frame
    of another prompt changes nothing."""
    teacher, enc = tiny
    pics = teacher.pictures  # (6, 48, 8, 8): prompt p owns pictures 2p, 2p + 1
    text = enc.encode([PROMPTS[1].text] * 4)
    noise = torch.randn(4, 48, 2, 8, 8, generator=torch.Generator().manual_seed(0))
    noise = noise - noise.mean((1, 2, 3, 4), keepdim=True) + torch.tensor([-0.02, -0.001, 0.001, 0.02])[:, None, None,
                                                                                                       None, None]
    got = coupled_sample(teacher, text, noise=noise)
    assert got.shape == noise.shape and got.dtype == torch.float32
    for row, picture in enumerate((2, 2, 3, 3)):
        torch.testing.assert_close(got[row], pics[picture][:, None].expand(-1, 2, -1, -1))
    shown = pics[3][None, :, None].repeat(4, 1, 1, 1, 1)  # (4, 48, 1, 8, 8) a context frame of picture 3
    for row in range(4):
        torch.testing.assert_close(coupled_sample(teacher, text, noise=noise, context=shown)[row, :, 0], pics[3])
    other = pics[4][None, :, None].repeat(4, 1, 1, 1, 1)  # another prompt's scene: no evidence for prompt 1
    torch.testing.assert_close(coupled_sample(teacher, text, noise=noise, context=other), got)
    many = torch.randn(4000, 48, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    picks = coupled_sample(teacher, enc.encode([PROMPTS[0].text]).repeat(4000, 1, 1), noise=many)[:, :, 0]
    first = (picks == pics[0]).flatten(1).all(1).float().mean()
    assert abs(float(first) - 0.5) < 0.03 and bool(((picks == pics[0]) | (picks == pics[1])).flatten(1).all(1).all())


def test_forward_is_a_bidirectional_model_for_score_with_context(tiny):
    teacher, enc = tiny
    text = enc.encode([PROMPTS[0].text])
    gen = torch.Generator().manual_seed(0)
    ctx = teacher.pictures[1][None, :, None].expand(1, -1, 2, -1, -1)
    x_t = torch.randn(1, 48, 3, 8, 8, generator=gen)
    t = torch.tensor([700.0])
    x0 = score_with_context(teacher, ctx, x_t, t, text)
    torch.testing.assert_close(x0, teacher.x0(x_t, torch.full((1, 3), 0.7), text, ctx))
    flow = teacher(torch.cat([ctx, x_t], 2), torch.tensor([[0, 0, 700, 700, 700.0]]), text)
    assert flow[:, :, :2].abs().max() == 0
    torch.testing.assert_close(x0_from_flow(x_t, flow[:, :, 2:], 0.7), x0)
    with pytest.raises(ValueError, match="bidirectional"):
        teacher(x_t, t, text, attention="block_causal")


@pytest.fixture(scope="module")
def full():
    return ExactTeacher(), ToyTextEncoder()


def _nearest(x0: torch.Tensor, pics: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    d = (x0.transpose(1, 2)[:, :, None] - pics[None, None]).abs().flatten(3).mean(-1)  # (B, F, K)
    return d.min(-1).values, d.argmin(-1)


def test_short_teacher_samples_hold_still_pick_a_picture_uniformly(full):
    teacher, enc = full
    prompt = ScenePrompt(palette="desert", style="shapes")
    n = 200
    x0 = exact_sample(teacher, enc.encode([prompt.text] * n), num_frames=3, steps=32,
                      generator=torch.Generator().manual_seed(0))
    dist, pick = _nearest(x0, library_latents(prompt))
    assert dist.max() < 1e-4  # a library picture
    assert (pick == pick[:, :1]).all() and (x0 - x0[:, :, :1]).abs().max() < 1e-5  # every frame the same
    counts = np.bincount(pick[:, 0].numpy(), minlength=4)
    assert (np.abs(counts - n / 4) < 4 * math.sqrt(n * 0.25 * 0.75)).all(), counts


def test_long_teacher_reproduces_its_context_and_ignores_other_scenes(full):
    teacher, enc = full
    prompt, other = ScenePrompt(palette="forest"), ScenePrompt(palette="neon")
    pics = library_latents(prompt)
    gen = torch.Generator().manual_seed(1)
    n = 40
    shown = pics[2][None, :, None] + 0.3 * torch.randn(n, 48, 3, 8, 8, generator=gen)  # drifted copy of picture 2
    elsewhere = library_latents(other)[0][None, :, None].expand(n, -1, 3, -1, -1)
    context = torch.cat([shown, elsewhere], dim=2)
    x0 = exact_sample(teacher, enc.encode([prompt.text] * n), num_frames=3, context=context, generator=gen)
    assert (_nearest(x0, pics)[1] == 2).all()
    short = ExactTeacher(use_context=False)
    x0 = exact_sample(short, enc.encode([prompt.text] * n), num_frames=3, context=context, generator=gen)
    assert len(set(_nearest(x0, pics)[1][:, 0].tolist())) > 1  # the short teacher invents
    absent = elsewhere[:1].expand(200, -1, -1, -1, -1)
    x0 = exact_sample(teacher, enc.encode([prompt.text] * 200), num_frames=3, context=absent, generator=gen)
    counts = np.bincount(_nearest(x0, pics)[1][:, 0].numpy(), minlength=4)
    assert (np.abs(counts - 50) < 4 * math.sqrt(200 * 0.25 * 0.75)).all(), counts  # absent: uniform over the K
