"""The scene world: fixed libraries per prompt, visit schedules, the forgetting oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from context_forcing_core.toyworld.codec import ToyCodec
from context_forcing_core.toyworld.constants import CELL, FRAMES_PER_SECOND, PALETTES
from context_forcing_core.toyworld.scenes import (
    LIBRARY_SIZE,
    VISIT_UNIT,
    ScenePrompt,
    SceneSchedule,
    Visit,
    all_scene_prompts,
    forgetting_schedule,
    library,
    library_latents,
    random_schedule,
    relabel_schedule,
    render_schedule,
    return_schedule,
    schedule_latents,
)


def test_library_is_fixed_distinct_flat_and_on_the_palette():
    for prompt in all_scene_prompts():
        lib = library(prompt)
        assert lib.shape == (LIBRARY_SIZE, 3, 32, 32)
        np.testing.assert_array_equal(lib, library(prompt))
        flat = lib.reshape(LIBRARY_SIZE, 3, 4, CELL, 4, CELL)
        assert (flat == flat[:, :, :, :1, :, :1]).all()  # every 8 x 8 cell one colour
        colours = np.round(np.asarray(PALETTES[prompt.palette]) / 255.0 * 256) / 256
        pixels = lib.transpose(0, 2, 3, 1).reshape(-1, 3)
        assert np.isclose(pixels[:, None], colours[None]).all(-1).any(-1).all()
        assert len({p.tobytes() for p in lib}) == LIBRARY_SIZE


def test_library_latents_are_the_codec_of_the_pictures():
    prompt = ScenePrompt(palette="neon", style="bands")
    lat = library_latents(prompt)  # (K, 48, 8, 8)
    frames = ToyCodec().decode(lat.permute(1, 0, 2, 3)[None])[0]
    np.testing.assert_array_equal(frames.numpy(), library(prompt))


@pytest.mark.parametrize("seed", range(6))
def test_random_schedule_invariants(seed):
    s = random_schedule(np.random.default_rng(seed))
    assert s.num_frames == 60 * FRAMES_PER_SECOND
    palettes = {v.prompt: v.prompt.palette for v in s.visits}
    assert len(set(palettes.values())) == len(palettes) == 5  # distinct palettes name the scenes
    for a, b in zip(s.visits, s.visits[1:]):
        assert a.stop == b.start and a.prompt != b.prompt
    assert all(v.start % VISIT_UNIT == 0 for v in s.visits)
    frames = render_schedule(s)
    for v in s.visits:
        assert (frames[v.start:v.stop] == library(v.prompt)[v.picture]).all()


def test_schedules_reach_long_gaps():
    gaps = []
    for seed in range(18):
        s = random_schedule(np.random.default_rng(seed))
        last = {}
        for v in s.visits:
            if v.prompt in last:
                gaps.append((v.start - last[v.prompt]) / FRAMES_PER_SECOND)
            last[v.prompt] = v.stop
    gaps = np.asarray(gaps)
    assert gaps.min() >= 1.5 and (gaps >= 10).sum() >= 40 and (gaps >= 20).sum() >= 10


def _return_gaps(schedule: SceneSchedule) -> list[int]:
    last, gaps = {}, []
    for v in schedule.visits:
        if v.prompt in last:
            gaps.append(v.start - last[v.prompt])
        last[v.prompt] = v.stop
    return gaps


@pytest.mark.parametrize("seed", range(8))
def test_min_return_gap_keeps_returns_out_of_a_window(seed):
    kwargs = dict(num_frames=60, num_scenes=5, visit_units=(1, 1))
    s = random_schedule(np.random.default_rng(seed), min_return_gap=18, **kwargs)
    gaps = _return_gaps(s)
    assert gaps and min(gaps) >= 18
    plain = random_schedule(np.random.default_rng(seed), **kwargs)
    assert plain == random_schedule(np.random.default_rng(seed), min_return_gap=0, **kwargs)
    with pytest.raises(ValueError, match="min_return_gap"):
        random_schedule(np.random.default_rng(seed), min_return_gap=-1, **kwargs)


def test_min_return_gap_falls_back_to_the_least_recent_scene():
    # 3 scenes of 6-frame visits cannot keep 18 frames apart: the least recently shown one returns
    s = random_schedule(np.random.default_rng(0), num_frames=48, num_scenes=3, visit_units=(1, 1), min_return_gap=18)
    assert len(s.visits) == 8 and min(_return_gaps(s)) == 6


def test_return_schedules_end_in_a_return_half_of_the_time():
    returns = 0
    for seed in range(200):
        s = return_schedule(np.random.default_rng(seed), context_frames=84, target_frames=6)
        *context, target = s.visits
        assert (target.start, target.stop) == (84, 90) and target.prompt != context[-1].prompt
        shown = {v.prompt: v.picture for v in context}
        if target.prompt in shown:
            returns += 1
            assert target.picture == shown[target.prompt]
        else:
            assert target.prompt.palette not in {v.prompt.palette for v in context}
    assert 80 <= returns <= 120
    never = return_schedule(np.random.default_rng(0), context_frames=84, target_frames=6, return_prob=0.0)
    assert never.visits[-1].prompt not in {v.prompt for v in never.visits[:-1]}


def test_schedule_latents_are_the_codec_of_the_rendered_frames():
    s = return_schedule(np.random.default_rng(5), context_frames=24, target_frames=6)
    lat = schedule_latents(s)  # (48, 30, 8, 8)
    assert lat.shape == (48, 30, 8, 8)
    frames = ToyCodec().decode(lat[None])[0].numpy()
    np.testing.assert_array_equal(frames, render_schedule(s))


def test_schedule_rejects_two_pictures_for_one_prompt_and_repeated_scene():
    a, b = ScenePrompt(palette="ocean"), ScenePrompt(palette="snow")
    with pytest.raises(ValueError, match="two different pictures"):
        SceneSchedule(visits=(Visit(prompt=a, picture=0, start=0, stop=6), Visit(prompt=b, picture=0, start=6, stop=12),
                              Visit(prompt=a, picture=1, start=12, stop=18)))
    with pytest.raises(ValueError, match="consecutive"):
        SceneSchedule(visits=(Visit(prompt=a, picture=0, start=0, stop=6), Visit(prompt=a, picture=0, start=6, stop=12)))


def test_forgetting_schedule_changes_the_picture_only_after_its_horizon():
    a, b = ScenePrompt(palette="ocean"), ScenePrompt(palette="snow")
    s = SceneSchedule(visits=(Visit(prompt=a, picture=2, start=0, stop=6), Visit(prompt=b, picture=0, start=6, stop=12),
                              Visit(prompt=a, picture=2, start=12, stop=18),
                              Visit(prompt=b, picture=0, start=18, stop=48)))
    f = forgetting_schedule(s, 1.0)  # b is away 12..18 = 1.5 s > 1 s, a is away 6..12 = 1.5 s
    assert [v.picture for v in f.visits] == [2, 0, 3, 1]
    assert [v.picture for v in forgetting_schedule(s, 2.0).visits] == [2, 0, 2, 0]


def test_relabel_keeps_the_timing_and_the_rules():
    s = random_schedule(np.random.default_rng(3))
    r = relabel_schedule(s, np.random.default_rng(4))
    assert [(v.start, v.stop) for v in r.visits] == [(v.start, v.stop) for v in s.visits]
    assert len({v.prompt.palette for v in r.visits}) == len({v.prompt for v in s.visits})


def test_scene_prompt_text_is_in_the_toy_vocabulary():
    from context_forcing_core.toyworld.text import ToyTextEncoder, tokenize
    enc = ToyTextEncoder(width=8)
    for p in all_scene_prompts():
        assert all(w in enc.vocabulary for w in tokenize(p.text))
    embs = enc.encode([p.text for p in all_scene_prompts()])
    assert torch.cdist(embs.flatten(1), embs.flatten(1)).add(torch.eye(18) * 1e9).min() > 1


def test_scene_prompts_name_what_is_allowed_and_have_canonical_text():
    assert ScenePrompt().text == "a desert scene, shapes over bands"
    assert ScenePrompt(palette="snow", style="bands").text == "a snow scene, vertical bands"
    assert len({p.text for p in all_scene_prompts()}) == 18
    with pytest.raises(ValueError, match="allowed: desert"):
        ScenePrompt(palette="mars")
    with pytest.raises(ValueError, match="allowed: bands"):
        ScenePrompt(style="dots")
