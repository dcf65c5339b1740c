"""MetricsLogger: JSON lines always, TensorBoard scalars/images/GIF videos when the package is installed."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from training import telemetry
from training.telemetry import MetricsLogger, gif_bytes


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_jsonl_records_flush_on_cadence_and_on_close(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=False, flush_every=2) as log:
        log.log({"step": 0, "loss": torch.tensor(0.5), "frames": np.int64(21), "note": "warmup"})
        assert lines(log.path) == [], "buffered until the cadence"
        log.log({"loss": 0.25}, step=1)
        assert len(lines(log.path)) == 2
        log.log({"step": 2, "loss": float("nan")})
    assert lines(tmp_path / "metrics.jsonl")[:2] == [
        {"step": 0, "loss": 0.5, "frames": 21, "note": "warmup"}, {"step": 1, "loss": 0.25}]
    last = lines(tmp_path / "metrics.jsonl")[2]
    assert last["step"] == 2 and np.isnan(last["loss"])
    assert not (tmp_path / "tensorboard").exists()
    with MetricsLogger(tmp_path, tensorboard=False) as log:  # a resumed run appends
        log.log({"step": 3, "loss": 0.125})
    assert [r["step"] for r in lines(tmp_path / "metrics.jsonl")] == [0, 1, 2, 3]


def test_disabled_logger_writes_nothing(tmp_path):
    with MetricsLogger(tmp_path / "run", enabled=False) as log:
        log.log({"step": 0, "loss": 1.0})
        log.add_video("v", np.zeros((2, 3, 4, 4)), step=0)
        log.add_image("i", np.zeros((3, 4, 4)), step=0)
    assert not (tmp_path / "run").exists()
    with pytest.raises(TypeError, match="numbers"):
        MetricsLogger(tmp_path).log({"loss": [1.0]})


def test_works_without_tensorboard(tmp_path, monkeypatch):
    monkeypatch.setattr(telemetry, "tensorboard_available", lambda: False)
    with pytest.raises(ImportError, match="tensorboard"):
        MetricsLogger(tmp_path, tensorboard=True)
    with MetricsLogger(tmp_path) as log:
        assert not log.tensorboard
        log.log({"step": 0, "loss": 1.0})
        log.add_video("v", np.zeros((2, 3, 4, 4)), step=0)
    assert lines(tmp_path / "metrics.jsonl") == [{"step": 0, "loss": 1.0}]
    assert not (tmp_path / "tensorboard").exists()


def test_gif_bytes_round_trip():
    frames = np.random.default_rng(0).integers(0, 256, (5, 3, 6, 7)).astype(np.uint8)
    gif = Image.open(io.BytesIO(gif_bytes(frames, fps=4)))
    assert gif.n_frames == 5 and gif.size == (7, 6) and gif.info["duration"] == 250


def test_tensorboard_events_are_readable(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    video = torch.rand(6, 3, 8, 8)
    with MetricsLogger(tmp_path) as log:
        assert log.tensorboard
        for step in range(3):
            log.log({"step": step, "loss": 1.0 / (step + 1), "note": "text is JSONL only"})
        log.add_image("sample/strip", Image.new("RGB", (10, 4), (255, 0, 0)), step=2)
        log.add_video("sample/video", video, step=2)
    acc = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    assert acc.Tags()["scalars"] == ["loss"]
    assert [(e.step, e.value) for e in acc.Scalars("loss")] == [(0, 1.0), (1, 0.5), (2, pytest.approx(1 / 3))]
    strip = acc.Images("sample/strip")[0]
    assert (strip.step, strip.width, strip.height) == (2, 10, 4)
    assert np.asarray(Image.open(io.BytesIO(strip.encoded_image_string)))[0, 0].tolist() == [255, 0, 0]
    clip = acc.Images("sample/video")[0]
    gif = Image.open(io.BytesIO(clip.encoded_image_string))
    assert (clip.step, clip.width, clip.height, gif.format, gif.n_frames) == (2, 8, 8, "GIF", 6)
