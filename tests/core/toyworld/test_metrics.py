"""Oracle metrics: ground truth scores perfectly, forgetting and frozen baselines are caught, inputs are validated."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from context_forcing_core.toyworld.camera import MOTIONS, CameraSpec, camera_path, render_video
from context_forcing_core.toyworld.metrics import (
    DEFAULT_BIN_EDGES_S,
    column_contrast,
    drift,
    effective_context,
    estimate_shifts,
    halfway_threshold,
    motion_fidelity,
    pooled_curve,
    rebin,
    revisit_curve,
)
from context_forcing_core.toyworld.synthetic import forgetting_video, frozen_video
from context_forcing_core.toyworld.world import FRAMES_PER_SECOND, SceneSpec, render_panorama

WIDTH = 256
T60 = 60 * FRAMES_PER_SECOND


def world(motion: str, seed: int, palette: str = "desert", style: str = "mixed"):
    pano = render_panorama(SceneSpec(palette=palette, style=style, seed=seed))
    offsets = camera_path(CameraSpec(motion=motion, seed=seed), T60, WIDTH)
    period = WIDTH if motion == "loop" else None
    return pano, offsets, period


@pytest.mark.parametrize("motion", MOTIONS)
@pytest.mark.parametrize("seed,palette,style", [(0, "desert", "mixed"), (1, "neon", "bands"), (2, "snow", "shapes")])
def test_ground_truth_scores_zero_revisit_error_exact_shifts_and_good_motion(motion, seed, palette, style):
    pano, offsets, period = world(motion, seed, palette, style)
    video = render_video(pano, offsets)
    assert np.array_equal(estimate_shifts(video), np.diff(offsets))
    curve = revisit_curve(video, period=period)  # shifts estimated from the video itself
    assert curve.populated.any() and curve.continuous_count > 0
    assert np.all(curve.error[curve.populated] < 1e-6) and curve.continuous_error < 1e-6
    assert np.all(np.isnan(curve.error[~curve.populated]))
    fid = motion_fidelity(video, offsets)
    assert fid.ok and fid.travel_ratio == 1.0 and fid.mean_abs_shift_error_px == 0.0 and fid.shift_residual == 0.0
    assert fid.direction_changes == fid.reference_direction_changes
    assert abs(drift(video, palette).palette_distance_change) < 0.01


def test_revisit_gaps_match_the_brute_force_definition():
    from tests.core.toyworld.test_world import revisit_gaps_s

    pano, offsets, _ = world("pan_with_pauses", 3)
    curve = revisit_curve(render_video(pano, offsets), shifts=np.diff(offsets))
    assert np.allclose(np.sort(curve.gaps_s), np.sort(revisit_gaps_s(offsets, WIDTH)))


@pytest.mark.parametrize("seed", range(3))
def test_forgetting_baselines_have_effective_context_within_one_bin_of_n(seed):
    """N = 5 s lands exactly on the 5-s bin edge; N = 15 s lies inside the [10, 20) bin, so 10 or 20 s."""
    pano, offsets, _ = world("pan_with_pauses", seed)
    truth = revisit_curve(render_video(pano, offsets))
    forget5 = revisit_curve(forgetting_video(pano, offsets, 5, seed=seed))
    forget15 = revisit_curve(forgetting_video(pano, offsets, 15, seed=seed))
    threshold = halfway_threshold(truth, forget5)
    assert 0.02 < threshold < 0.3
    assert effective_context(truth, threshold) >= 40
    assert effective_context(forget5, threshold) == 5.0
    assert effective_context(forget15, threshold) in (10.0, 20.0)
    assert np.all(forget15.error[:4] == 0) and forget15.error[-2] > threshold, "remembers < 10 s, forgets 20-40 s"


def test_forgetting_video_keeps_motion_and_only_changes_content_that_was_away_long():
    pano, offsets, _ = world("fast_pan", 0)
    video = forgetting_video(pano, offsets, 5, seed=0)
    assert np.array_equal(estimate_shifts(video), np.diff(offsets))
    assert np.array_equal(video[:8], render_video(pano, offsets[:8]))
    assert np.array_equal(forgetting_video(pano, offsets, 1e9), render_video(pano, offsets))
    assert not np.array_equal(video, render_video(pano, offsets))


def test_frozen_video_fails_motion_fidelity_but_looks_consistent():
    pano, offsets, _ = world("slow_pan", 0)
    frozen = frozen_video(pano, offsets)
    assert frozen.shape == (T60, 3, 32, 32)
    fid = motion_fidelity(frozen, offsets)
    assert not fid.ok and fid.travel_px == 0 and fid.travel_ratio == 0.0
    assert revisit_curve(frozen).continuous_error == 0.0


def test_shift_residual_is_the_cost_of_the_chosen_shift():
    """Flat frames 0.2 then 0.5: every shift costs 0.3. Frames from unrelated views leave a large residual."""
    flat = np.concatenate([np.full((1, 3, 32, 32), 0.2), np.full((1, 3, 32, 32), 0.5)]).astype(np.float32)
    assert motion_fidelity(flat, np.zeros(2, dtype=np.int64)).shift_residual == pytest.approx(0.3)
    pano, offsets, _ = world("fast_pan", 0)
    jumps = render_video(pano, (offsets * 5) % WIDTH)  # 40 px per frame: beyond the +-8 px search
    assert motion_fidelity(jumps, offsets).shift_residual > 0.05


def test_effective_context_rule():
    pano, offsets, _ = world("pan_with_pauses", 0)
    curve = revisit_curve(render_video(pano, offsets))
    assert effective_context(curve, 0.1) == DEFAULT_BIN_EDGES_S[int(np.flatnonzero(curve.populated)[-1]) + 1]
    assert effective_context(curve, 0.0) == 0.0  # the first populated bin already fails
    empty = revisit_curve(render_video(pano, offsets[:2]))
    assert np.isnan(effective_context(empty, 0.1))


def test_drift_sees_blur_and_colour_shift():
    pano, offsets, _ = world("slow_pan", 0)
    video = render_video(pano, offsets)
    bad = video.copy()
    late = slice(int(0.85 * len(bad)), None)
    bad[late] = 0.5 * bad[late] + 0.25  # washed out towards grey
    d, d_bad = drift(video, "desert"), drift(bad, "desert")
    assert d.palette_distance.shape == d.sharpness.shape == (T60,)
    assert 0 <= d.early_palette_distance < 0.1 and abs(d.sharpness_change) < 0.05
    assert d_bad.palette_distance_change > 0.1
    assert d_bad.sharpness_change < d.sharpness_change - 0.3 * d.sharpness[late].mean(), "late frames half as sharp"
    one_colour = drift(video, [(237, 201, 175)])  # a palette given as RGB 0..255; fewer colours = farther
    assert np.all(one_colour.palette_distance >= d.palette_distance)


def test_torch_input_and_timing_of_a_60_s_video():
    pano, offsets, _ = world("pan_with_pauses", 0)
    start = time.perf_counter()
    video = render_video(pano, offsets)
    curve = revisit_curve(video)
    motion_fidelity(video, offsets)
    drift(video, "desert")
    assert time.perf_counter() - start < 2.0
    assert np.array_equal(revisit_curve(torch.from_numpy(video)).count, curve.count)


def test_bad_inputs_raise():
    pano, offsets, _ = world("slow_pan", 0)
    video = render_video(pano, offsets[:10])
    with pytest.raises(ValueError, match="shape"):
        estimate_shifts(video[0])
    with pytest.raises(ValueError, match="max_shift"):
        estimate_shifts(video, max_shift=32)
    with pytest.raises(ValueError, match="NaN"):
        estimate_shifts(np.full_like(video, np.nan))
    with pytest.raises(ValueError, match="shifts"):
        revisit_curve(video, shifts=np.zeros(3))
    with pytest.raises(ValueError, match="period"):
        revisit_curve(video, period=16)
    with pytest.raises(ValueError, match="bin_edges_s"):
        revisit_curve(video, bin_edges_s=(2.0, 1.0))
    with pytest.raises(ValueError, match="reference_offsets"):
        motion_fidelity(video, offsets)
    with pytest.raises(ValueError, match="allowed: desert"):
        drift(video, "mars")
    with pytest.raises(ValueError, match="palette"):
        drift(video, [1, 2, 3])
    with pytest.raises(ValueError, match="forget_after_s"):
        forgetting_video(pano, offsets, -1)
    with pytest.raises(ValueError, match="panorama"):
        frozen_video(pano[0], offsets)
    with pytest.raises(ValueError, match="common|bin edges"):
        halfway_threshold(revisit_curve(video), revisit_curve(video, bin_edges_s=(1.0, 2.0)))


def test_from_frame_scores_only_later_frames_against_everything_before():
    """Static camera (shifts 0), flat frames 0.2, 0.2, 0.6: continuous errors are 0 at t = 1 and 0.4 at t = 2."""
    video = np.stack([np.full((3, 4, 4), v, dtype=np.float32) for v in (0.2, 0.2, 0.6)])
    full = revisit_curve(video, shifts=np.zeros(2))
    late = revisit_curve(video, shifts=np.zeros(2), from_frame=2)
    assert full.continuous_count == 8 and full.continuous_error == pytest.approx(0.2)
    assert late.continuous_count == 4 and late.continuous_error == pytest.approx(0.4)
    with pytest.raises(ValueError, match="from_frame"):
        revisit_curve(video, from_frame=3)


def test_pooled_curve_weighs_every_revisit_once():
    pano, offsets, _ = world("pan_with_pauses", 0)
    video = render_video(pano, offsets)
    a = revisit_curve(forgetting_video(pano, offsets, 5, seed=0))
    b = revisit_curve(forgetting_video(pano, offsets, 20, seed=1))
    pooled = pooled_curve([a, b])
    both = a.populated & b.populated
    expected = (a.error * a.count + b.error * b.count)[both] / (a.count + b.count)[both]
    np.testing.assert_allclose(pooled.error[both], expected)
    np.testing.assert_array_equal(pooled.count, a.count + b.count)
    assert pooled.continuous_count == a.continuous_count + b.continuous_count
    same = pooled_curve([a, a])
    np.testing.assert_allclose(same.error[a.populated], a.error[a.populated])
    with pytest.raises(ValueError, match="bin edges"):
        pooled_curve([a, revisit_curve(video, bin_edges_s=(1.0, 2.0))])


def test_rebin_keeps_every_revisit_and_same_edges_change_nothing():
    pano, offsets, _ = world("pan_with_pauses", 0)
    curve = revisit_curve(forgetting_video(pano, offsets, 5, seed=0))
    same = rebin(curve, tuple(curve.bin_edges_s))
    np.testing.assert_array_equal(same.count, curve.count)
    np.testing.assert_allclose(same.error[curve.populated], curve.error[curve.populated])
    coarse = rebin(curve, (0.5, 10.0, 80.0))
    assert coarse.count.sum() == curve.count.sum()
    assert coarse.count[0] == curve.count[:4].sum()  # 0.5-1, 1-2, 2-5, 5-10


def test_column_contrast_of_flat_and_half_and_half_frames():
    rng = np.random.default_rng(0)
    assert column_contrast(np.full((4, 3, 8, 8), 0.3), rng) == 0
    half = np.zeros((4, 3, 8, 8))
    half[..., 4:] = 1.0  # two random columns differ by 1 with probability 1/2
    assert column_contrast(half, rng) == pytest.approx(0.5, abs=0.03)
