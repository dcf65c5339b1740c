"""Teachers as continuers on the scene world: hand cases of the scoring, the exact teachers as the two extremes."""

from __future__ import annotations

import json

import numpy as np

from context_forcing_core.eval.toy import scene_continuers as sc
from context_forcing_core.models.config import toy
from context_forcing_core.models.loading import save_model
from context_forcing_core.toyworld.scenes import ScenePrompt, SceneSchedule, Visit, library
from tests.conftest import random_model


def _schedule() -> SceneSchedule:
    a, b, c = ScenePrompt(palette="ocean"), ScenePrompt(palette="snow"), ScenePrompt(palette="neon")
    order = [(a, 0), (b, 1), (c, 2), (b, 1), (a, 0)]
    return SceneSchedule(visits=tuple(Visit(prompt=p, picture=k, start=6 * i, stop=6 * i + 6)
                                      for i, (p, k) in enumerate(order)))


def test_returns_leave_out_the_sink_scene():
    s = _schedule()
    assert [(r.start, p.start) for r, p in s.returns(sink=False)] == [(18, 6)]
    assert [(r.start, p.start) for r, p in s.returns()] == [(18, 6), (24, 0)]


def test_score_hand_cases():
    s = _schedule()
    ret, prev = s.returns(sink=False)[0]
    lib = library(ret.prompt)  # (K, 3, 32, 32)
    context = np.zeros((30, 3, 32, 32), dtype=np.float32)
    context[prev.start:prev.stop] = lib[1]
    same = sc.score(np.repeat(lib[1:2], 6, axis=0), context, ret, prev)
    assert same.recalled and same.relative == 0 and same.library_distance == 0 and same.gap_s == 6 / 4
    other = sc.score(np.repeat(lib[3:4], 6, axis=0), context, ret, prev)
    expected = np.abs(lib[3] - lib[1]).mean() / sc.wrong_pick_error(ret.prompt)
    assert not other.recalled and np.isclose(other.relative, expected) and other.library_distance == 0
    half = sc.score(np.repeat(lib[1:2] * 0.5, 6, axis=0), context, ret, prev)
    assert half.library_distance > 0


def test_exact_long_teacher_recalls_every_return_and_the_short_one_does_not(tmp_path):
    teacher = tmp_path / "teacher.safetensors"
    save_model(random_model(toy()), teacher)
    out = tmp_path / "report"
    assert sc.main(["--teacher", f"random={teacher}", "--student", str(teacher), "--schedules", "1", "--seeds", "2",
                    "--seconds", "30", "--out", str(out)]) == 0
    s = json.loads((out / "results.json").read_text())
    assert list(s) == [f"{t} | {c}" for c in ("ground truth", "student")
                       for t in ("exact long teacher", "exact short teacher (no context)", "random")]
    truth = s["exact long teacher | ground truth"]
    assert truth["recall"] == [1.0, 0.0] and truth["relative"][0] < 1e-3 and truth["library_distance"][0] < 1e-3
    assert s["exact short teacher (no context) | ground truth"]["recall"][0] < 0.9
    assert len({r["returns"] for r in s.values()}) == 1 and truth["returns"] > 0
    assert (out / "recall_vs_gap.png").is_file() and "| random | student |" in (out / "report.md").read_text()
