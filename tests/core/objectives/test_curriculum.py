from __future__ import annotations

import pytest
import torch

from context_forcing_core.objectives.curriculum import (
    RolloutCurriculum,
    exit_step,
    max_rollout,
    sample_rollout,
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_max_rollout_endpoints_and_whole_chunks():
    cfg = RolloutCurriculum()
    assert max_rollout(0, cfg) == 84
    assert max_rollout(600, cfg) == 105
    assert max_rollout(10_000, cfg) == 105
    assert max_rollout(300, cfg) == 93  # 94.5 rounded down to whole chunks
    values = [max_rollout(s, cfg) for s in range(0, 700, 7)]
    assert all(v % 3 == 0 for v in values) and values == sorted(values)
    assert max_rollout(5, RolloutCurriculum(ramp_steps=0)) == 105
    with pytest.raises(ValueError):
        max_rollout(-1, cfg)


def test_sample_rollout_bounds_and_coverage():
    cfg = RolloutCurriculum(k_min=21, n_start=30, n_end=42, ramp_steps=10)
    g = gen()
    early = {sample_rollout(0, cfg, g) for _ in range(300)}
    assert early == {21, 24, 27, 30}
    late = {sample_rollout(50, cfg, g) for _ in range(500)}
    assert late == set(range(21, 43, 3))
    assert sample_rollout(3, cfg, gen(4)) == sample_rollout(3, cfg, gen(4))


def test_exit_step():
    g = gen()
    draws = {exit_step(4, g) for _ in range(200)}
    assert draws == {0, 1, 2, 3}
    assert exit_step(4, gen(9)) == exit_step(4, gen(9))
    with pytest.raises(ValueError):
        exit_step(0, g)


def test_curriculum_validation():
    with pytest.raises(ValueError):
        RolloutCurriculum(n_start=85)
    with pytest.raises(ValueError):
        RolloutCurriculum(k_min=18)
    with pytest.raises(ValueError):
        RolloutCurriculum(n_start=108)
    with pytest.raises(ValueError):
        RolloutCurriculum(ramp_steps=-1)
