"""Revisit curves: binning by gap against hand-computed cases, pooling, the effective-context rule, the halfway
threshold, frame checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from context_forcing_core.toyworld.metrics import (
    as_frames,
    bin_by_gap,
    effective_context,
    pooled_curve,
)

EDGES = (1.0, 2.0, 5.0, 10.0)


def test_bin_by_gap_by_hand():
    # gaps 1 and 1.5 in [1, 2), 2 in [2, 5), 10 in the closed last bin, 0.5 and 11 in no bin
    curve = bin_by_gap(EDGES, [1.0, 1.5, 2.0, 10.0, 0.5, 11.0], [0.2, 0.4, 1.0, 0.3, 9.0, 9.0],
                       continuous_sum=0.6, continuous_count=3)
    np.testing.assert_array_equal(curve.count, [2, 1, 1])
    np.testing.assert_allclose(curve.error, [0.3, 1.0, 0.3])
    assert len(curve.gaps_s) == len(curve.errors) == 6  # those outside the bins are kept
    assert curve.continuous_error == pytest.approx(0.2) and curve.continuous_count == 3
    empty = bin_by_gap(EDGES, [], [])
    assert np.isnan(empty.error).all() and not empty.populated.any() and np.isnan(empty.continuous_error)
    hits = bin_by_gap(EDGES, [1.0, 1.2, 3.0], [1.0, 0.0, 1.0])  # 0 / 1 values: the share per bin
    np.testing.assert_allclose(hits.error[:2], [0.5, 1.0])


def test_bin_by_gap_rejects_bad_input():
    with pytest.raises(ValueError, match="bin_edges_s"):
        bin_by_gap((2.0, 1.0), [1.5], [0.0])
    with pytest.raises(ValueError, match="bin_edges_s"):
        bin_by_gap((1.0,), [1.5], [0.0])
    with pytest.raises(ValueError, match="same length"):
        bin_by_gap(EDGES, [1.5, 2.5], [0.0])


def test_pooled_curve_weighs_every_revisit_once():
    a = bin_by_gap(EDGES, [1.0, 1.5, 3.0], [0.1, 0.3, 0.5], continuous_sum=1.0, continuous_count=4)
    b = bin_by_gap(EDGES, [1.2, 6.0], [0.6, 0.9], continuous_sum=0.5, continuous_count=1)
    pooled = pooled_curve([a, b])
    np.testing.assert_array_equal(pooled.count, a.count + b.count)
    np.testing.assert_allclose(pooled.error, [(0.1 + 0.3 + 0.6) / 3, 0.5, 0.9])
    assert pooled.continuous_count == 5 and pooled.continuous_error == pytest.approx(1.5 / 5)
    same = pooled_curve([a, a])
    np.testing.assert_allclose(same.error[a.populated], a.error[a.populated])
    with pytest.raises(ValueError, match="bin edges"):
        pooled_curve([a, bin_by_gap((1.0, 2.0), [1.5], [0.0])])
    with pytest.raises(ValueError, match="at least one"):
        pooled_curve([])


def test_effective_context_rule():
    curve = bin_by_gap(EDGES, [1.5, 3.0, 6.0], [0.1, 0.2, 0.9])
    assert effective_context(curve, 0.5) == 5.0  # the first failing bin starts at 5 s
    assert effective_context(curve, 1.0) == 10.0  # nothing fails: the upper edge of the last populated bin
    assert effective_context(curve, 0.05) == 0.0  # the first populated bin already fails
    gap = bin_by_gap(EDGES, [1.5, 6.0], [0.1, 0.1])  # an empty bin in between is skipped
    assert effective_context(gap, 0.5) == 10.0
    assert np.isnan(effective_context(bin_by_gap(EDGES, [], []), 0.5))


def test_as_frames_takes_numpy_and_torch_and_checks_shape_and_values():
    frames = np.random.default_rng(0).uniform(size=(2, 3, 4, 4)).astype(np.float32)
    assert np.array_equal(as_frames(torch.from_numpy(frames)), frames)
    assert as_frames(frames.astype(np.float64)).dtype == np.float32
    with pytest.raises(ValueError, match="shape"):
        as_frames(frames[0])
    with pytest.raises(ValueError, match="NaN"):
        as_frames(np.full_like(frames, np.nan))
