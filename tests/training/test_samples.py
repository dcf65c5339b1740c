"""Toy sample videos: fixed schedules, files, and the scene oracle's metrics of the student's videos."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import random_model
from PIL import Image

from context_forcing_core.models.config import toy
from context_forcing_core.toyworld.scene_rollout import video_of
from context_forcing_core.toyworld.scenes import forgetting_schedule, random_schedule, render_schedule
from context_forcing_core.toyworld.visit_metrics import scene_report
from training.samples import sample_frames, sample_schedules, toy_samples, video_metrics


def test_sample_schedules_are_fixed_by_the_seed_and_share_their_cuts():
    first, again, other = sample_schedules(3, 20.0, 0), sample_schedules(3, 20.0, 0), sample_schedules(3, 20.0, 1)
    assert first == again and first != other
    assert sample_frames(20.0) == 84 and all(s.num_frames == 84 for s in first)  # 80 frames, whole 6-frame visits
    assert all(s.switch_frames == first[0].switch_frames for s in first)
    assert len({tuple(s.prompt_texts()) for s in first}) == 3
    training_draw = random_schedule(np.random.default_rng(0), num_frames=84, num_scenes=4)
    assert training_draw != first[0]


def test_toy_samples_write_gifs_strips_and_the_oracle_metrics(tmp_path):
    model = random_model(toy()).train()
    out = toy_samples(model, videos=2, seconds=3.0, memory="context_forcing", seed=3, out_dir=tmp_path, step=40)
    assert model.training, "the caller's mode is restored"
    frames = 12  # 3 toy s = 12 frames, two visit units
    folder = tmp_path / "step_0000040"
    assert [p.name for p in out.paths] == ["sample_0.gif", "sample_0_strip.png", "sample_1.gif", "sample_1_strip.png",
                                           "samples.json"]
    assert all(p.parent == folder and p.is_file() for p in out.paths)
    for gif_path in out.paths[0:4:2]:
        gif = Image.open(gif_path)
        assert (gif.n_frames, gif.size) == (frames, (128, 128))
    assert Image.open(out.paths[1]).size == (frames * 64 + (frames - 1) * 2, 64)

    # independent reference: the same schedules filmed here, metrics straight from the oracle
    schedules = sample_schedules(2, 3.0, 3)
    videos, _ = video_of(model.eval(), schedules, memory="context_forcing", seed=3)
    assert torch.equal(out.frames, videos)
    reports = [scene_report(v, s) for v, s in zip(videos, schedules)]
    assert out.metrics["library_distance"] == pytest.approx(np.mean([r.library_distance for r in reports]))
    summary = json.loads(out.paths[-1].read_text())
    assert summary["schedules"][0]["prompts"] == schedules[0].prompt_texts() and summary["step"] == 40


def test_video_metrics_on_ground_truth_and_a_forgetting_video():
    schedule = random_schedule(np.random.default_rng(2), num_frames=240, num_scenes=4)
    truth = video_metrics(render_schedule(schedule), schedule)
    assert truth == {"recall": 1.0, "revisit_error": 0.0, "library_distance": 0.0}
    forgetful = video_metrics(render_schedule(forgetting_schedule(schedule, 5.0)), schedule)
    assert forgetful["recall"] < 1.0 and forgetful["revisit_error"] > 0.1


def test_toy_samples_refuse_a_non_toy_model(tmp_path, model):
    with pytest.raises(ValueError, match="toy-codec"):
        toy_samples(model, videos=1, seconds=1, memory="context_forcing", seed=0, out_dir=tmp_path, step=0)
