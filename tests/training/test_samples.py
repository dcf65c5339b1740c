"""Toy sample videos: files, frame counts, and oracle metrics equal to the toyworld metrics on the decoded frames."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import random_model
from PIL import Image

from context_forcing_core.diffusion.sampler import generate
from context_forcing_core.models.config import toy
from context_forcing_core.toyworld.camera import CameraSpec, camera_path, render_video
from context_forcing_core.toyworld.codec import ToyCodec
from context_forcing_core.toyworld.metrics import drift, estimate_shifts, revisit_curve
from context_forcing_core.toyworld.synthetic import forgetting_video
from context_forcing_core.toyworld.text import ToyTextEncoder
from context_forcing_core.toyworld.world import SceneSpec, render_panorama
from training.samples import toy_samples, video_metrics

PROMPTS = ["a neon panorama, vertical bands, slow pan", "a snow panorama, shapes on plain ground, fast pan"]


def test_toy_samples_write_gifs_strips_and_the_oracle_metrics(tmp_path):
    model = random_model(toy()).train()
    out = toy_samples(model, prompts=PROMPTS, seconds=2.5, memory="context_forcing", seed=3, out_dir=tmp_path, step=40)
    assert model.training, "the caller's mode is restored"
    frames = 12  # 2.5 toy s = 10 frames, rounded up to whole 3-frame chunks
    folder = tmp_path / "step_0000040"
    assert [p.name for p in out.paths] == ["sample_0.gif", "sample_0_strip.png", "sample_1.gif", "sample_1_strip.png",
                                           "samples.json"]
    assert all(p.parent == folder and p.is_file() for p in out.paths)
    for gif_path in out.paths[0:4:2]:
        gif = Image.open(gif_path)
        assert (gif.n_frames, gif.size) == (frames, (128, 128))
    assert Image.open(out.paths[1]).size == (frames * 64 + (frames - 1) * 2, 64)

    # independent reference: the same rollout, decoded here, metrics straight from toyworld
    text = ToyTextEncoder(width=model.config.text_dim, max_tokens=model.config.text_len).encode(PROMPTS)
    latents = generate(model.eval(), text, num_latent_frames=frames, memory="context_forcing", seed=3,
                       latent_size=(8, 8)).latents
    videos = ToyCodec().decode(latents).clamp(0, 1)
    assert torch.equal(out.frames, videos)
    expected = []
    for video, palette in zip(videos, ["neon", "snow"]):
        shifts = estimate_shifts(video)
        curve = revisit_curve(video)
        long = curve.errors[curve.gaps_s >= 10]
        expected.append({"revisit_error_long": long.mean() if len(long) else math.nan,
                         "travel_px_per_s": np.abs(shifts).sum() / (frames / 4),
                         "sharpness_change": drift(video, palette).sharpness_change,
                         "palette_distance_change": drift(video, palette).palette_distance_change})
    for key, value in out.metrics.items():
        mean = np.nanmean([e[key] for e in expected]) if not all(np.isnan(e[key]) for e in expected) else math.nan
        assert value == pytest.approx(mean, nan_ok=True), key


def test_video_metrics_on_ground_truth_and_a_forgetting_video():
    pano = render_panorama(SceneSpec(palette="ocean", style="mixed", seed=1))
    offsets = camera_path(CameraSpec(motion="fast_pan", seed=1), 240, pano.shape[-1])
    truth = video_metrics(render_video(pano, offsets), "an ocean panorama, shapes over bands, fast pan")
    assert truth["revisit_error_long"] == 0.0, "ground truth comes back unchanged after long gaps"
    assert truth["travel_px_per_s"] == np.abs(np.diff(offsets)).sum() / 60
    assert abs(truth["palette_distance_change"]) < 0.01
    forgetful = video_metrics(forgetting_video(pano, offsets, forget_after_s=5.0), "ocean, fast pan")
    assert forgetful["revisit_error_long"] > 0.05
    loop = camera_path(CameraSpec(motion="loop", seed=1), 240, pano.shape[-1])
    looped = video_metrics(render_video(pano, loop), "an ocean panorama, looping pan")
    assert looped["revisit_error_long"] == 0.0, "a loop revisits after one panorama width"


def test_toy_samples_refuse_a_non_toy_model(tmp_path, model):
    with pytest.raises(ValueError, match="toy-codec"):
        toy_samples(model, prompts=PROMPTS, seconds=1, memory="context_forcing", seed=0, out_dir=tmp_path, step=0)
