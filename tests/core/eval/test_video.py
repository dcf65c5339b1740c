"""Frame sources: an mp4 streamed in batches equals the whole decode; in-memory layouts; unreadable inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from eval_tiny_backbones import smooth_frames, write_video

from context_forcing_core.eval.video import InMemoryFrames, VideoFile


@pytest.fixture(scope="module")
def mp4(tmp_path_factory):
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", smooth_frames(40), fps=16)


def test_streams_in_batches_with_fps_and_count(mp4):
    import imageio.v2 as iio

    video = VideoFile(mp4)
    assert (video.fps, video.width, video.height, video.name) == (16.0, 32, 32, "clip")
    assert video.estimated_frames is not None and abs(video.estimated_frames - 40) <= 1
    batches = list(video.batches(7))
    assert [len(b) for b in batches] == [7, 7, 7, 7, 7, 5] and video.frames_read == 40
    assert all(b.shape[1:] == (3, 32, 32) and b.dtype == torch.float32 for b in batches)
    streamed = torch.cat(batches)
    whole = torch.from_numpy(np.stack(iio.mimread(mp4, format="FFMPEG"))).permute(0, 3, 1, 2).float() / 255
    assert torch.allclose(streamed, whole, atol=1 / 255)  # same decoder: equal up to rounding
    source = torch.from_numpy(smooth_frames(40)).permute(0, 3, 1, 2).float() / 255
    assert (streamed - source).abs().max() < 6 / 255  # near-lossless codec
    assert video.fps == VideoFile(mp4, fps=8.0).fps * 2


def test_unreadable_and_missing_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.mp4"):
        VideoFile(tmp_path / "nope.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    with pytest.raises(ValueError, match="bad.mp4"):
        VideoFile(bad)


@pytest.mark.parametrize("to_torch", [False, True])
def test_in_memory_layouts_give_the_same_batches(to_torch):
    thwc = smooth_frames(10, 16, 24)  # (T, H, W, 3) uint8, ComfyUI layout
    tchw = np.ascontiguousarray(thwc.transpose(0, 3, 1, 2)).astype(np.float32) / 255
    if to_torch:
        thwc, tchw = torch.from_numpy(thwc), torch.from_numpy(tchw)
    a = InMemoryFrames(thwc, fps=16)
    b = InMemoryFrames(tchw, fps=16)
    assert (a.layout, b.layout, a.estimated_frames) == ("thwc", "tchw", 10)
    got_a, got_b = list(a.batches(4)), list(b.batches(4))
    assert [len(x) for x in got_a] == [4, 4, 2]
    assert torch.allclose(torch.cat(got_a), torch.cat(got_b)) and torch.cat(got_a).shape == (10, 3, 16, 24)


def test_in_memory_rejects_ambiguous_or_wrong_shapes():
    with pytest.raises(ValueError, match="cannot tell the layout"):
        InMemoryFrames(np.zeros((2, 3, 8, 3)), fps=16)
    assert InMemoryFrames(np.zeros((2, 3, 8, 3)), fps=16, layout="thwc").layout == "thwc"
    with pytest.raises(ValueError, match="layout"):
        InMemoryFrames(np.zeros((2, 4, 8, 8)), fps=16, layout="tchw")
    with pytest.raises(ValueError, match="fps"):
        InMemoryFrames(np.zeros((2, 3, 8, 8)), fps=0)
    with pytest.raises(ValueError, match="T >= 1"):
        InMemoryFrames(np.zeros((0, 3, 8, 8)), fps=16)
