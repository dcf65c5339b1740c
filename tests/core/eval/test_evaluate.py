"""evaluate_video wiring on in-memory frames with a colour-mean stand-in backbone; aggregation over videos."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from context_forcing_core.eval.evaluate import EvalConfig, aggregate_results, evaluate_video, read_prompts, usable_timestamps
from context_forcing_core.eval.video import InMemoryFrames


class ColourMean:
    """Stand-in backbone: a frame's feature is its mean RGB (so pure red and pure green are orthogonal)."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def embed_images(self, frames: torch.Tensor) -> torch.Tensor:
        self.calls.append(len(frames))
        return F.normalize(frames.mean(dim=(2, 3)), dim=-1)  # (N, 3)

    def embed_text(self, prompts):
        return F.normalize(torch.tensor([[1.0, 0.0, 0.0]]).repeat(len(prompts), 1), dim=-1)  # "red"


def red_green(num: int) -> np.ndarray:
    """(num, 3, 4, 4) frames: even frames pure red, odd frames pure green."""
    out = np.zeros((num, 3, 4, 4), np.float32)
    out[0::2, 0] = 1.0
    out[1::2, 1] = 1.0
    return out


def test_alternating_orthogonal_frames_give_hand_computed_metrics():
    backbones = {"dinov2": ColourMean(), "dino": ColourMean(), "clip": ColourMean()}
    cfg = EvalConfig(timestamps_s=(0.5, 1.5, 9.0), half_width_s=0.5, clip_s=1.0, batch_size=3, progress=False)
    result = evaluate_video(InMemoryFrames(red_green(4), fps=2.0, name="rg"), "red", backbones, cfg)
    assert backbones["dino"].calls == [3, 1]  # streamed in batches of 3
    # frames at 0, 0.5, 1, 1.5 s; t = 9 s has no frame and is dropped
    assert result.timestamps_s == [0.5, 1.5] and result.num_frames == 4
    # cos(f0, fi) = 1, 0, 1, 0; t = 0.5 -> frames 0..2 -> 2/3; t = 1.5 -> frames 2, 3 -> 1/2
    assert np.allclose(result.curves["dinov2"], [2 / 3, 0.5]) and np.allclose(result.curves["clip_f"], [2 / 3, 0.5])
    assert np.allclose(result.curves["clip_t"], [2 / 3, 0.5])  # text = red = frame 0
    # s1 = 0.5 (0 + 0) = 0, s2 = 0.5 (0 + 1) = 0.5, s3 = 0.5 (0 + 0) = 0 -> 1/6
    assert result.scores["subject_consistency"] == pytest.approx(1 / 6)
    assert result.scores["background_consistency"] == pytest.approx(1 / 6)
    # 2-frame clips (0, 1), (2, 3): each s = 0.5 (0 + 0) = 0
    assert result.scores["subject_consistency_2s"] == pytest.approx(0.0)
    # per-frame CLIP-T 1, 0, 1, 0; one frame at each end: late 0 - early 1
    assert result.scores["clip_t_start_end_delta"] == pytest.approx(-1.0)
    assert json.loads(json.dumps(result.to_dict()))["name"] == "rg"


def test_backbone_subset_and_errors():
    only = evaluate_video(InMemoryFrames(red_green(4), fps=2.0), "x", {"dinov2": ColourMean()},
                          EvalConfig(progress=False))
    assert list(only.curves) == ["dinov2"] and only.scores == {} and only.timestamps_s == []  # 2-s video, t >= 10 s
    with pytest.raises(ValueError, match="at least two frames"):
        evaluate_video(InMemoryFrames(red_green(1), fps=2.0), "x", {"dino": ColourMean()}, EvalConfig(progress=False))
    with pytest.raises(ValueError, match="empty prompt"):
        evaluate_video(InMemoryFrames(red_green(4), fps=2.0), " ", {"clip": ColourMean()}, EvalConfig(progress=False))
    with pytest.raises(ValueError, match="no backbone"):
        evaluate_video(InMemoryFrames(red_green(4), fps=2.0), "x", {}, EvalConfig(progress=False))


def test_usable_timestamps_keep_windows_that_reach_the_video():
    # 957 frames at 16 fps: last frame at 59.75 s; the 60-s window [59.5, 60.5] still holds frames 952..956
    assert usable_timestamps((10, 60, 61), 957, 16.0, 0.5) == [10.0, 60.0]


def test_aggregate_is_video_weighted_per_timestamp():
    a = {"timestamps_s": [10.0, 20.0], "curves": {"dinov2": [0.8, 0.6]}, "scores": {"subject_consistency": 0.9}}
    b = {"timestamps_s": [10.0], "curves": {"dinov2": [0.4]}, "scores": {"subject_consistency": 0.7}}
    agg = aggregate_results([a, b])
    assert agg["num_videos"] == 2
    assert agg["scores"]["subject_consistency"]["mean"] == pytest.approx(0.8)
    assert agg["scores"]["subject_consistency"]["std"] == pytest.approx(0.1)
    curve = agg["curves"]["dinov2"]
    assert curve["timestamps_s"] == [10.0, 20.0] and np.allclose(curve["mean"], [0.6, 0.6])
    assert curve["num_videos"] == [2, 1] and np.allclose(curve["std"], [0.2, 0.0])


def test_prompts_file_must_match_the_videos(tmp_path):
    videos = [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a cat\na dog\n", encoding="utf-8")
    assert read_prompts(prompts, videos) == ["a cat", "a dog"]
    prompts.write_text("a cat\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"prompts.txt has 1 lines but there are 2 videos"):
        read_prompts(prompts, videos)
    prompts.write_text("a cat\n \n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"blank prompt on line\(s\) \[2\]"):
        read_prompts(prompts, videos)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        read_prompts(tmp_path / "missing.txt", videos)
