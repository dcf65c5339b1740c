"""Consistency maths on constructed features: windows, first-frame and text curves, VBench formula, aggregation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from context_forcing_core.eval.consistency import (
    clip_averaged,
    clip_starts,
    first_frame_curve,
    first_frame_similarity,
    start_end_delta,
    summarize_videos,
    text_alignment_curve,
    text_similarity,
    vbench_consistency,
    vbench_frame_scores,
    window_indices,
)


def unit(*degrees: float) -> np.ndarray:
    """(len(degrees), 2) unit vectors at the given angles."""
    rad = np.deg2rad(degrees)
    return np.stack([np.cos(rad), np.sin(rad)], axis=1)


def test_window_at_16_fps_is_17_frames_and_clips_at_the_end():
    idx = window_indices(961, 16.0, 10.0)
    assert idx.tolist() == list(range(152, 169)) and len(idx) == 17  # 9.5 s x 16 = 152, 10.5 s x 16 = 168
    assert window_indices(160, 16.0, 10.0).tolist() == list(range(152, 160))  # 10-s video: frames 152..159 only
    assert window_indices(961, 16.0, 0.0).tolist() == list(range(0, 9))  # t = 0 includes frame 0
    assert window_indices(160, 16.0, 20.0).tolist() == []  # wholly outside -> empty
    assert window_indices(100, 4.0, 2.0, half_width_s=0.0).tolist() == [8]


@pytest.mark.parametrize("args", [(-1, 16.0, 1.0), (10, 0.0, 1.0), (10, 16.0, float("nan")), (10, 16.0, 1.0, -0.1)])
def test_window_rejects_bad_arguments(args):
    with pytest.raises(ValueError):
        window_indices(*args)


def test_identical_frames_score_one_everywhere():
    feat = np.random.default_rng(0).normal(size=(1, 8))
    feats = np.repeat(feat, 40, axis=0)  # 40 identical frames, 10 s at 4 fps
    times = [1.0, 5.0, 9.75]
    assert np.allclose(first_frame_curve(feats, 4.0, times), 1.0)
    assert np.allclose(text_alignment_curve(feats, 5 * feat[0], 4.0, times), 1.0)
    assert vbench_consistency(feats) == pytest.approx(1.0)
    assert clip_averaged(feats, 4.0) == pytest.approx(1.0)


def test_rotated_features_give_known_cosines_and_window_means():
    feats = 3.0 * unit(0, 60, 90)  # frames at 0, 0.5, 1.0 s (2 fps); scale must not matter
    assert np.allclose(first_frame_similarity(feats), [1.0, 0.5, 0.0])
    # t = 0.75 +- 0.25 s -> frames 1, 2 -> (0.5 + 0) / 2; t = 0 +- 0.25 s -> frame 0 alone -> 1
    assert np.allclose(first_frame_curve(feats, 2.0, [0.75, 0.0], half_width_s=0.25), [0.25, 1.0])
    # t = 0.5 +- 0.5 s -> all three frames -> (1 + 0.5 + 0) / 3 = 0.5
    assert np.allclose(first_frame_curve(torch.tensor(feats), 2.0, [0.5]), [0.5])
    text = torch.tensor(unit(90)[0])  # text at 90 degrees: cosines 0, sin 60 = 0.866, 1
    assert np.allclose(text_similarity(feats, text), [0.0, math.sqrt(3) / 2, 1.0])
    # t = 0.75 +- 0.25 s -> frames 1, 2 -> (0.866 + 1) / 2
    got = text_alignment_curve(feats, text[None], 2.0, [0.75], half_width_s=0.25)
    assert np.allclose(got, [(math.sqrt(3) / 2 + 1) / 2])


def test_empty_window_and_dimension_mismatch_raise():
    with pytest.raises(ValueError, match="t = 60 s holds no frame"):
        first_frame_curve(unit(0, 10, 20), 16.0, [60.0])
    with pytest.raises(ValueError, match="dimensions"):
        text_similarity(unit(0, 10), np.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        first_frame_similarity(np.array([[1.0, np.nan]]))


def test_vbench_formula_on_three_frames_clamps_negative_cosines():
    # f0 at 0 deg, f1 at 120 deg, f2 at 60 deg:
    # s1 = 0.5 [max(0, cos(f0, f1) = -0.5) + max(0, cos(f0, f1) = -0.5)] = 0.5 [0 + 0] = 0
    # s2 = 0.5 [max(0, cos(f1, f2) = 0.5) + max(0, cos(f0, f2) = 0.5)] = 0.5
    # video score = (0 + 0.5) / 2 = 0.25 (without the clamp it would be (-0.5 + 0.5) / 2 = 0)
    feats = unit(0, 120, 60)
    assert np.allclose(vbench_frame_scores(feats), [0.0, 0.5])
    assert vbench_consistency(feats) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="two frames"):
        vbench_consistency(unit(0))


def test_clip_starts_borrow_preceding_frames_for_the_tail():
    assert clip_starts(10, 4) == [0, 4, 6]  # tail 8..9 becomes 6..9
    assert clip_starts(8, 4) == [0, 4]
    assert clip_starts(3, 4) == [0]


def test_clip_averaged_is_mean_of_per_clip_scores():
    feats = np.stack([np.arange(10.0), np.ones(10)], axis=1)  # column 0 = frame index
    # 2 fps x 2 s = 4-frame clips 0..3, 4..7, 6..9: column-0 means 1.5, 5.5, 7.5 -> 14.5 / 3
    got = clip_averaged(feats, 2.0, 2.0, score=lambda f: float(f[:, 0].mean()))
    assert got == pytest.approx(14.5 / 3)


def test_start_end_delta():
    # 20 values, 15 % -> 3 at each end: late mean 18, early mean 1
    assert start_end_delta(np.arange(20.0)) == pytest.approx(17.0)
    assert start_end_delta(torch.ones(5)) == 0.0
    with pytest.raises(ValueError):
        start_end_delta(np.ones(4), fraction=0.0)


def test_summarize_videos_is_video_weighted_and_skips_nan():
    s = summarize_videos([0.5, 1.0, float("nan")])
    assert (s.mean, s.std, s.num_videos) == (0.75, 0.25, 2)
    empty = summarize_videos([])
    assert math.isnan(empty.mean) and empty.num_videos == 0
