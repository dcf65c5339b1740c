"""Streaming decode against whole-video decode of a causal decoder shaped like Wan's (1 frame, then 4 per latent)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from context_forcing_core.stream_decode import PngSink, stream_decode, to_uint8


class CausalToyVae(torch.nn.Module):
    """Video frames from a latent frame and the one before it (a causal temporal kernel of 2, as Wan's convs).

    ``whole`` decodes every latent frame at once (the reference); ``stepper`` returns the one-frame decoder that
    carries the previous latent frame, as the node's Wan adapter carries the VAE's feature cache.
    """

    def __init__(self, channels: int = 4) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.now = torch.nn.Conv2d(channels, 3 * 4, 1)
        self.before = torch.nn.Conv2d(channels, 3 * 4, 1, bias=False)

    def _frames(self, z: torch.Tensor, prev: torch.Tensor | None) -> torch.Tensor:  # (1, C, h, w) -> (1, 3, n, H, W)
        y = self.now(z) + (self.before(prev) if prev is not None else 0)  # (1, 12, h, w)
        y = torch.tanh(y).unflatten(1, (3, 4)).repeat_interleave(2, -1).repeat_interleave(2, -2)  # (1, 3, 4, 2h, 2w)
        return y[:, :, :1] if prev is None else y  # the first latent frame gives one video frame, as in Wan

    def whole(self, z: torch.Tensor) -> torch.Tensor:  # (1, C, F, h, w) -> (1, 3, 1 + 4 (F - 1), H, W)
        return torch.cat([self._frames(z[:, :, t], z[:, :, t - 1] if t else None) for t in range(z.shape[2])], 2)

    def stepper(self):
        prev: list[torch.Tensor | None] = [None]

        def decode(z: torch.Tensor) -> torch.Tensor:
            out = self._frames(z[:, :, 0], prev[0])
            prev[0] = z[:, :, 0]
            return out

        return decode


class ListSink:
    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []
        self.closed = self.aborted = False

    def write(self, frames: np.ndarray) -> None:
        self.frames.append(frames)

    def close(self):
        self.closed = True
        return "done"

    def abort(self) -> None:
        self.aborted = True


def test_streamed_frames_equal_whole_video_decode():
    vae, z = CausalToyVae(), torch.randn(1, 4, 7, 3, 5)
    sink, ticks = ListSink(), []
    path, written = stream_decode(z, vae.stepper(), sink, on_frame=lambda done, total: ticks.append((done, total)))
    with torch.no_grad():
        reference = to_uint8(vae.whole(z))  # (25, 6, 10, 3)
    assert (path, written, sink.closed, sink.aborted) == ("done", 25, True, False)
    assert [f.shape[0] for f in sink.frames] == [1] + [4] * 6
    np.testing.assert_array_equal(np.concatenate(sink.frames), reference)
    assert ticks == [(i, 7) for i in range(1, 8)]


def test_to_uint8_matches_comfyui_save_image_conversion():
    pixels = torch.tensor([-2.0, -1.0, 0.0, 0.999, 1.0, 3.0]).view(1, 1, 1, 1, 6).expand(1, 3, 1, 1, 6)
    # ComfyUI: clamp((x + 1) / 2, 0, 1); Save Image: np.clip(255 * x, 0, 255).astype(uint8) (truncates)
    expected = np.clip(255.0 * np.clip((np.array([-2.0, -1.0, 0.0, 0.999, 1.0, 3.0], np.float32) + 1) / 2, 0, 1),
                       0, 255).astype(np.uint8)
    assert to_uint8(pixels)[0, 0, :, 0].tolist() == expected.tolist() == [0, 0, 127, 254, 255, 255]
    with pytest.raises(ValueError, match=r"\(1, 3, n, H, W\)"):
        to_uint8(torch.zeros(1, 4, 1, 2, 2))


def test_a_cancel_aborts_the_sink_and_leaves_no_folder(tmp_path):
    vae, z = CausalToyVae(), torch.randn(1, 4, 5, 2, 2)

    def cancel(done: int, total: int) -> None:
        if done == 3:
            raise KeyboardInterrupt

    target = tmp_path / "clip"
    with pytest.raises(KeyboardInterrupt):
        stream_decode(z, vae.stepper(), PngSink(target), on_frame=cancel)
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its partial twin


def test_png_sink_writes_the_frames_losslessly(tmp_path):
    vae, z = CausalToyVae(), torch.randn(1, 4, 3, 2, 3)
    path, written = stream_decode(z, vae.stepper(), PngSink(tmp_path / "clip"))
    files = sorted(path.iterdir())
    assert written == len(files) == 9 and files[0].name == "frame_00000.png"
    with torch.no_grad():
        reference = to_uint8(vae.whole(z))
    np.testing.assert_array_equal(np.stack([np.asarray(Image.open(f)) for f in files]), reference)
    with pytest.raises(FileExistsError):
        PngSink(path)  # never over an earlier output


@pytest.mark.parametrize("shape", [(2, 4, 3, 2, 2), (1, 4, 0, 2, 2), (4, 3, 2, 2)])
def test_only_one_non_empty_video_is_taken_and_a_refusal_leaves_no_folder(tmp_path, shape):
    with pytest.raises(ValueError, match=r"\(1, C, F >= 1, h, w\)"):
        stream_decode(torch.zeros(shape), CausalToyVae().stepper(), PngSink(tmp_path / "clip"))
    assert list(tmp_path.iterdir()) == []


def test_an_mp4_cancelled_midway_or_unwritable_leaves_nothing(tmp_path):
    from context_forcing_core.stream_decode import Mp4Sink

    def cancel(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    z = torch.randn(1, 4, 4, 1, 1).expand(1, 4, 4, 8, 8)
    with pytest.raises(KeyboardInterrupt):
        stream_decode(z, CausalToyVae().stepper(), Mp4Sink(tmp_path / "clip.mp4", fps=16), on_frame=cancel)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OSError):  # refused when the sink is made, before anything is decoded
        Mp4Sink(tmp_path / ("x" * 300 + ".mp4"), fps=16)
    assert list(tmp_path.iterdir()) == []


def test_mp4_sink_writes_every_frame_at_the_rate_and_size(tmp_path):
    import av

    from context_forcing_core.stream_decode import Mp4Sink

    vae = CausalToyVae()
    z = torch.randn(1, 4, 4, 1, 1).expand(1, 4, 4, 8, 8)  # flat frames: yuv420p's halved chroma loses nothing
    path, written = stream_decode(z, vae.stepper(), Mp4Sink(tmp_path / "clip.mp4", fps=16))
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # the partial file was renamed
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert (stream.average_rate, stream.width, stream.height) == (16, 16, 16)
    assert written == len(frames) == 13
    with torch.no_grad():
        reference = to_uint8(vae.whole(z)).astype(float)
    error = np.abs(np.stack(frames) - reference).mean(axis=(1, 2, 3))  # per frame, in 0-255 levels
    shuffled = np.abs(np.stack(frames) - reference[::-1]).mean(axis=(1, 2, 3))
    assert error.max() < 3 < shuffled.mean()  # lossy H.264, but each frame where it belongs
