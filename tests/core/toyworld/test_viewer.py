"""Viewer: files are written, images have the documented sizes, bad inputs raise."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from context_forcing_core.toyworld.camera import CameraSpec, camera_path, render_video
from context_forcing_core.toyworld.metrics import revisit_curve
from context_forcing_core.toyworld.synthetic import forgetting_video
from context_forcing_core.toyworld.viewer import canvas_image, main, revisit_plot, save_video, strip_image
from context_forcing_core.toyworld.world import SceneSpec, render_panorama


@pytest.fixture(scope="module")
def scene():
    pano = render_panorama(SceneSpec(seed=0))
    offsets = camera_path(CameraSpec(motion="pan_with_pauses", seed=0), 80, 256)
    return pano, offsets, render_video(pano, offsets)


@pytest.mark.parametrize("suffix", [".gif", ".png"])
def test_save_video_writes_an_animation(scene, tmp_path, suffix):
    moving = render_video(scene[0], camera_path(CameraSpec(motion="fast_pan", seed=0), 12, 256))  # no equal frames
    path = save_video(moving, tmp_path / f"clip{suffix}", fps=4, scale=3)
    with Image.open(path) as im:
        assert im.size == (96, 96) and im.n_frames == 12


def test_save_video_rejects_bad_suffix_and_fps(scene, tmp_path):
    with pytest.raises(ValueError, match="unsupported video suffix"):
        save_video(scene[2], tmp_path / "clip.avi")
    with pytest.raises(ValueError, match="fps"):
        save_video(scene[2], tmp_path / "clip.gif", fps=0)
    with pytest.raises(ValueError, match="scale"):
        save_video(scene[2], tmp_path / "clip.gif", scale=0)


def test_strip_and_canvas_sizes(scene):
    pano, offsets, video = scene
    assert strip_image(video, every=8, scale=2).size == (10 * 64 + 9 * 2, 64)
    assert strip_image(video[:1], every=8, scale=1, gap=0).size == (32, 32)
    canvas = canvas_image(video)
    assert canvas.size == (int(offsets.max() - offsets.min()) + 32, 32)
    seen = np.asarray(canvas)
    assert np.array_equal(seen, np.asarray(canvas_image(video, shifts=np.diff(offsets))))
    ref = (np.moveaxis(pano[:, :, offsets.min(): offsets.max() + 32], 0, -1) * 255 + 0.5).astype(np.uint8)
    assert np.array_equal(seen, ref), "ground truth stitches back into the panorama"
    assert canvas_image(video, period=256, scale=2).size == (512, 64)
    with pytest.raises(ValueError, match="shifts"):
        canvas_image(video, shifts=np.zeros(2))
    with pytest.raises(ValueError, match="every"):
        strip_image(video, every=0)


def test_revisit_plot(scene):
    pano, offsets, video = scene
    curves = {"truth": revisit_curve(video), "forgets": revisit_curve(forgetting_video(pano, offsets, 2))}
    img = revisit_plot(curves, threshold=0.1)
    assert img.size == (640, 400) and img.mode == "RGB"
    assert len(np.unique(np.asarray(img).reshape(-1, 3), axis=0)) > 5, "something was drawn"
    with pytest.raises(ValueError, match="at least one"):
        revisit_plot({})
    with pytest.raises(ValueError, match="bin edges"):
        revisit_plot({"a": curves["truth"], "b": revisit_curve(video, bin_edges_s=(1.0, 2.0))})


def test_doc_command_writes_small_pngs(tmp_path, capsys):
    main(["--doc", str(tmp_path)])
    for name in ("ground_truth_strip.png", "revisit_error.png"):
        assert (tmp_path / name).stat().st_size < 100_000
    assert "wrote" in capsys.readouterr().out


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
