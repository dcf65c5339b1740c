"""The per-level probe classifies chunks as hand-counted and runs end to end on a random toy student."""

from __future__ import annotations

import torch
from conftest import random_model

from context_forcing_core.eval.toy.regression_levels import chunk_kinds, level_errors
from context_forcing_core.models.config import toy
from context_forcing_core.models.loading import save_model
from context_forcing_core.toyworld.scenes import ScenePrompt, SceneSchedule, Visit


def test_chunk_kinds_by_hand():
    a, b = ScenePrompt(palette="desert", style="bands"), ScenePrompt(palette="ocean", style="bands")
    s = SceneSchedule(visits=(Visit(prompt=a, picture=0, start=0, stop=6), Visit(prompt=b, picture=1, start=6, stop=9),
                              Visit(prompt=a, picture=0, start=9, stop=15)))
    assert chunk_kinds(s, 3) == ["first visit", "continuation", "first visit", "return", "continuation"]


def test_level_errors_cover_every_kind_and_level(tmp_path):
    path = tmp_path / "student.safetensors"
    save_model(random_model(toy()), path)
    errors = level_errors(str(path), rollouts=1, frames=12, teacher_forced=True, ode_steps=2)
    assert {lvl for _, lvl in errors} == {0, 1, 2, 3}
    assert "first visit" in {k for k, _ in errors} and all(v > 0 and torch.isfinite(torch.tensor(v))
                                                          for v in errors.values())
