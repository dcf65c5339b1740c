"""Scene-world oracle metrics against hand-computed cases: ground truth perfect, the forgetting oracle fails at its
horizon, a wrong return scores its distance over the prompt's wrong-pick error."""

from __future__ import annotations

import math

import numpy as np
import pytest

from context_forcing_core.toyworld.metrics import effective_context, pooled_curve
from context_forcing_core.toyworld.scenes import (
    ScenePrompt,
    SceneSchedule,
    Visit,
    forgetting_schedule,
    library,
    random_schedule,
    render_schedule,
)
from context_forcing_core.toyworld.visit_metrics import RECALL_THRESHOLD, scene_report, wrong_pick_error

A, B, C = ScenePrompt(palette="ocean"), ScenePrompt(palette="snow", style="bands"), ScenePrompt(palette="neon")


def _three_visits() -> SceneSchedule:
    return SceneSchedule(visits=(Visit(prompt=A, picture=1, start=0, stop=6), Visit(prompt=B, picture=0, start=6, stop=12),
                                 Visit(prompt=C, picture=3, start=12, stop=18),
                                 Visit(prompt=B, picture=0, start=18, stop=24)))


def test_ground_truth_is_perfect():
    s = _three_visits()
    r = scene_report(render_schedule(s), s)
    assert len(r.returns) == 1 and r.returns[0].gap_s == 1.5 and r.returns[0].recalled
    assert r.returns[0].relative == 0 and r.within_visit_change == 0 and r.library_distance == 0
    assert math.isnan(r.sink_relative)
    assert r.palette_distance < 0.01  # on the 1/256 grid, not exactly the palette


def test_a_wrong_return_scores_its_distance_over_the_wrong_pick_error():
    s = _three_visits()
    frames = render_schedule(s)
    frames[18:24] = library(B)[2]
    r = scene_report(frames, s)
    expected = np.abs(library(B)[2] - library(B)[0]).mean()
    assert r.returns[0].error == pytest.approx(expected, rel=1e-6)
    assert r.returns[0].relative == pytest.approx(expected / wrong_pick_error(B), rel=1e-6)
    assert not r.returns[0].recalled
    lib = library(B)
    by_hand = np.mean([np.abs(lib[i] - lib[j]).mean() for i in range(4) for j in range(4) if i != j])
    assert wrong_pick_error(B) == pytest.approx(by_hand)


def test_within_visit_change_and_library_distance_by_hand():
    s = _three_visits()
    frames = render_schedule(s)
    frames[3] = np.clip(frames[3] + 0.25, 0, 1)
    r = scene_report(frames, s)
    step = np.abs(frames[3] - frames[2]).mean()  # frames 2->3 and 3->4 change by the same amount
    transitions = 5 * 4  # four visits of 6 frames
    assert r.within_visit_change == pytest.approx(2 * step / transitions, rel=1e-5)
    assert r.library_distance == pytest.approx(np.abs(frames[3] - library(A)).mean(axis=(1, 2, 3)).min() / 24, rel=1e-5)


def test_sink_returns_are_kept_apart():
    s = SceneSchedule(visits=(Visit(prompt=A, picture=1, start=0, stop=6), Visit(prompt=B, picture=0, start=6, stop=12),
                              Visit(prompt=A, picture=1, start=12, stop=18)))
    r = scene_report(render_schedule(s), s)
    assert r.returns[0].sink and r.curve.count.sum() == 0 and r.sink_relative == 0


def test_forgetting_oracle_fails_at_its_horizon_and_the_threshold_lies_halfway():
    truth, forget = [], []
    for seed in range(6):
        s = random_schedule(np.random.default_rng(seed))
        truth.append(scene_report(render_schedule(s), s))
        forget.append(scene_report(render_schedule(forgetting_schedule(s, 5.0)), s))
    t, f = pooled_curve([r.curve for r in truth]), pooled_curve([r.curve for r in forget])
    assert all(r.effective_context_s >= 20 for r in truth)
    assert effective_context(f, RECALL_THRESHOLD) == 5.0  # pooled: one video may lack a bin or pick a near twin
    edges = t.bin_edges_s
    late = edges[:-1] >= 5
    assert np.nanmin(f.error[late & f.populated]) > 0.7 and np.nanmax(f.error[~late & f.populated]) == 0
    common = t.populated & f.populated  # halfway between the two oracles' worst bins
    assert abs(0.5 * (np.nanmax(t.error[common]) + np.nanmax(f.error[common])) - RECALL_THRESHOLD) < 0.2
    recall = np.nanmean(np.stack([r.recall_rate for r in forget]), 0)
    assert (recall[late & f.populated] == 0).all()  # the oracle always shows the next picture
