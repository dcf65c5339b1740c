"""Video side of prepare-data: captions tables, frame-rate resampling, centre crop, and skips for bad files/rows."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch
from data_tiny_models import ramp_frames, write_video

from training.data.report import PrepareReport, SkipItem
from training.data.videos import VideoConfig, crop_box, load_clip, read_captions, resize_frame, source_indices

SMALL = VideoConfig(fps=16, height=16, width=16, num_frames=5, min_source_fps=15)


def test_source_indices_pick_the_nearest_frame_in_time():
    assert source_indices(5, 32, 16) == [0, 2, 4, 6, 8]  # every other frame
    assert source_indices(5, 24, 16) == [0, 2, 3, 5, 6]  # t_j = j / 16 s -> 1.5 j source frames, rounded half up
    assert source_indices(3, 16, 16) == [0, 1, 2]


def test_video_config_validates():
    assert VideoConfig().latent_frames == 21  # Wan: 81 frames -> 21 latents
    with pytest.raises(ValueError, match="4k \\+ 1"):
        VideoConfig(num_frames=80)
    with pytest.raises(ValueError, match="multiples of 16"):
        VideoConfig(height=100)


def test_centre_crop_keeps_the_middle():
    # 32 x 64 source: a 200-grey middle square between two dark bands; a square target keeps exactly the square
    frame = np.zeros((32, 64, 3), np.uint8)
    frame[:, 16:48] = 200
    assert crop_box(32, 64, 16, 16) == (16, 0, 48, 32)
    assert crop_box(64, 32, 16, 32) == (0, 24, 32, 40)  # tall source, wide target: crop top and bottom
    assert crop_box(480, 854, 480, 832) == (11, 0, 843, 480)
    out = resize_frame(frame, 16, 16)
    assert out.shape == (16, 16, 3) and np.all(out == 200)


def test_load_clip_resamples_crops_and_resizes(tmp_path):
    frames = ramp_frames(24, 32, 48)  # 32 fps, frame i has grey 8 i
    frames[:, :, :8] = 255  # side bands the centre crop (32 x 32 out of 32 x 48) must drop
    frames[:, :, 40:] = 255
    clip = load_clip(write_video(tmp_path / "ramp.mp4", frames, fps=32), SMALL)
    assert clip.shape == (3, 5, 16, 16) and clip.dtype == torch.uint8
    means = clip.float().mean(dim=(0, 2, 3))
    expected = 8.0 * np.array(source_indices(5, 32, 16))  # frames 0, 2, 4, 6, 8
    assert np.allclose(means.numpy(), expected, atol=2.0), means


@pytest.mark.parametrize(("name", "reason"), [("missing", "missing_file"), ("corrupt", "corrupt"),
                                              ("truncated", "corrupt"), ("short", "too_short"), ("slow", "low_fps")])
def test_bad_files_raise_skip_with_a_reason(tmp_path, name, reason):
    path = tmp_path / f"{name}.mp4"
    if name == "corrupt":
        path.write_bytes(np.random.default_rng(0).bytes(3000))
    elif name == "truncated":  # a download cut short: the mp4 index (moov) is missing
        data = write_video(tmp_path / "full.mp4", ramp_frames(24), fps=16).read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif name == "short":  # 5 frames at 16 fps need 5 source frames; give 4
        write_video(path, ramp_frames(4), fps=16)
    elif name == "slow":
        write_video(path, ramp_frames(12), fps=8)
    with pytest.raises(SkipItem) as info:
        load_clip(path, SMALL)
    assert info.value.reason == reason


def test_exactly_enough_frames_is_not_too_short(tmp_path):
    clip = load_clip(write_video(tmp_path / "five.mp4", ramp_frames(5), fps=16), SMALL)
    assert np.allclose(clip.float().mean(dim=(0, 2, 3)).numpy(), [0, 8, 16, 24, 32], atol=2.0)


def test_read_captions_csv_with_aliases_and_bad_rows(tmp_path, caplog):
    table = tmp_path / "captions.csv"
    table.write_text('video,text\na.mp4,a cat\nsub/b.mp4,"  a dog, running  "\nc.mp4,   \n,no path\n/abs/d.mp4,x\n')
    report = PrepareReport()
    with caplog.at_level(logging.WARNING):
        rows = read_captions(table, tmp_path / "vids", report)
    assert [(r.name, r.caption) for r in rows] == [("a.mp4", "a cat"), ("sub/b.mp4", "a dog, running"),
                                                   ("/abs/d.mp4", "x")]
    assert rows[1].path == tmp_path / "vids" / "sub" / "b.mp4" and str(rows[2].path) == "/abs/d.mp4"
    assert report.skipped == {"empty_caption": 1, "bad_row": 1}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "captions.csv:4 (c.mp4)" in warnings[0] and "captions.csv:5" in warnings[1]


def test_read_captions_jsonl_never_raises_for_one_bad_line(tmp_path):
    table = tmp_path / "captions.jsonl"
    lines = [json.dumps({"path": "a.mp4", "caption": "a cat"}), "{not json", json.dumps(["a list"]),
             "", json.dumps({"video": "b.mp4", "text": "a dog"}), json.dumps({"path": "c.mp4", "caption": None})]
    table.write_text("\n".join(lines) + "\n")
    report = PrepareReport()
    rows = read_captions(table, tmp_path, report)
    assert [r.name for r in rows] == ["a.mp4", "b.mp4"]
    assert report.skipped == {"bad_row": 2, "empty_caption": 1}


def test_read_captions_rejects_a_table_without_columns(tmp_path):
    table = tmp_path / "captions.csv"
    table.write_text("filename,description\na.mp4,x\n")
    with pytest.raises(ValueError, match="video column"):
        read_captions(table, tmp_path, PrepareReport())
    with pytest.raises(FileNotFoundError):
        read_captions(tmp_path / "nope.csv", tmp_path, PrepareReport())
