"""Viewer: files are written, images have the documented sizes, bad inputs raise."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from context_forcing_core.toyworld.scenes import all_scene_prompts, library, random_schedule, render_schedule
from context_forcing_core.toyworld.viewer import save_video, strip_image


@pytest.fixture(scope="module")
def video():
    """80 frames of a scene schedule (visits of still pictures)."""
    return render_schedule(random_schedule(np.random.default_rng(0), num_frames=84))[:80]


@pytest.mark.parametrize("suffix", [".gif", ".png"])
def test_save_video_writes_an_animation(tmp_path, suffix):
    pictures = np.concatenate([library(p) for p in all_scene_prompts()[:3]])  # 12 different pictures
    path = save_video(pictures, tmp_path / f"clip{suffix}", fps=4, scale=3)
    with Image.open(path) as im:
        assert im.size == (96, 96) and im.n_frames == 12


def test_save_video_rejects_bad_suffix_and_fps(video, tmp_path):
    with pytest.raises(ValueError, match="unsupported video suffix"):
        save_video(video, tmp_path / "clip.avi")
    with pytest.raises(ValueError, match="fps"):
        save_video(video, tmp_path / "clip.gif", fps=0)
    with pytest.raises(ValueError, match="scale"):
        save_video(video, tmp_path / "clip.gif", scale=0)


def test_strip_sizes_and_content(video):
    strip = strip_image(video, every=8, scale=2)
    assert strip.size == (10 * 64 + 9 * 2, 64)
    assert strip_image(video[:1], every=8, scale=1, gap=0).size == (32, 32)
    first = (np.moveaxis(video[0], 0, -1) * 255 + 0.5).astype(np.uint8).repeat(2, axis=0).repeat(2, axis=1)
    assert np.array_equal(np.asarray(strip)[:, :64], first)
    with pytest.raises(ValueError, match="every"):
        strip_image(video, every=0)


def test_mp4_round_trip_keeps_every_frame(tmp_path):
    imageio = pytest.importorskip("imageio.v2")  # pinned in requirements-dev.txt; optional for users
    frames = np.random.default_rng(0).uniform(size=(10, 3, 32, 32)).astype(np.float32)
    path = save_video(frames, tmp_path / "clip.mp4", fps=4, scale=4)
    read = imageio.mimread(path)
    assert len(read) == 10 and read[0].shape == (128, 128, 3)


def test_line_plot_draws_each_series_in_its_colour_and_refuses_bad_input():
    from context_forcing_core.toyworld.viewer import COLOURS, line_plot

    x = np.arange(5.0)
    img = line_plot({"a": (x, x), "b": (x, np.array([1.0, np.nan, 2.0, 2.0, 1.0]))}, x_label="t", y_label="v")
    pixels = {tuple(p) for p in np.asarray(img).reshape(-1, 3)}
    assert COLOURS[0] in pixels and COLOURS[1] in pixels and COLOURS[2] not in pixels
    with pytest.raises(ValueError, match="same length"):
        line_plot({"a": (x, x[:3])}, x_label="t", y_label="v")
    with pytest.raises(ValueError, match="positive"):
        line_plot({"a": (x, x)}, x_label="t", y_label="v", log_x=True)
