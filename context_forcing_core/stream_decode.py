"""Streaming decode: latents to a video on disk one latent frame at a time.

Decoding a 60-s Wan rollout (240 latent frames) in one VAE call holds its ~960 decoded frames at once. Wan's VAE is
causal in time: its decoder turns one latent frame into video frames (1 for the first latent frame, 4 after) given a
cache of the last two feature frames of every causal convolution, and whole-video decode is exactly that loop with
the outputs concatenated. Running the same loop and handing each frame's pixels to a file writer as they come gives
the same frames with peak memory bounded by one latent frame's decode, whatever the video's length.

The decoder itself is supplied by the caller (:data:`FrameDecoder`): the node pack wraps the Wan VAE ComfyUI loaded;
the library knows no VAE. Writers: :class:`Mp4Sink` (H.264 through PyAV, which every ComfyUI installs) and
:class:`PngSink` (a numbered PNG sequence, lossless). Both write under a temporary name and rename at the end, so an
interrupted or failed decode leaves no partial video behind (their own rename, not ``atomic.atomic_path``: a sink
stays open across many writes, and the PNG sink is a folder).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor

from .diffusion.settings import FPS

FrameDecoder = Callable[[Tensor], Tensor]
"""Decodes the next latent frame (1, C, 1, h, w) into its video frames (1, 3, n, H, W), values in [-1, 1].

Stateful: it carries what its causal layers need from the earlier latent frames, so calling it on frames 0, 1, ...
in order gives what one call on the whole video would."""


class FrameSink(Protocol):
    """Where decoded frames go, in order."""

    def write(self, frames: np.ndarray) -> None:
        """Append frames, (n, H, W, 3) uint8."""

    def close(self) -> Path:
        """Finish the file and move it to its final name; returns that name."""

    def abort(self) -> None:
        """Drop what was written; no file is left behind."""


def to_uint8(pixels: Tensor) -> np.ndarray:
    """(1, 3, n, H, W) in [-1, 1] -> (n, H, W, 3) uint8, the conversion of ComfyUI's VAE Decode + Save Image.

    (x + 1) / 2 clamped to [0, 1] in float32, times 255, truncated: so frames equal Save Image's bit for bit.
    """
    if pixels.ndim != 5 or pixels.shape[0] != 1 or pixels.shape[1] != 3:
        raise ValueError(f"decoder must return (1, 3, n, H, W) pixels, got {tuple(pixels.shape)}")
    x = ((pixels[0].float() + 1.0) / 2.0).clamp(0.0, 1.0)  # (3, n, H, W)
    x = (255.0 * x).clamp(0.0, 255.0).to(torch.uint8)  # float -> uint8 truncates, like numpy's astype
    return x.permute(1, 2, 3, 0).contiguous().cpu().numpy()  # (n, H, W, 3)


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")


class Mp4Sink:
    """H.264 mp4 (yuv420p, constant rate factor ``crf``) through PyAV, written to a temporary name first."""

    def __init__(self, path: str | os.PathLike[str], *, fps: int, crf: int = 18) -> None:
        import av  # ComfyUI's own video dependency; deferred so the library imports without it

        FPS.check("fps", fps)
        self.path = Path(path)
        self._tmp = _partial(self.path)
        self._av: Any = av
        self._fps = fps
        self._crf = crf
        self._file = open(self._tmp, "wb")  # noqa: SIM115 (closed in close / abort); a bad path fails here, at once
        try:
            self._container: Any = av.open(self._file, mode="w", format="mp4")
        except BaseException:
            self._file.close()
            self._tmp.unlink(missing_ok=True)
            raise
        self._stream: Any = None

    def write(self, frames: np.ndarray) -> None:
        """Encode frames (n, H, W, 3) uint8; the first call fixes the size."""
        if self._stream is None:
            height, width = frames.shape[1:3]
            if height % 2 or width % 2:
                raise ValueError(f"mp4 (yuv420p) needs an even width and height, got {width}x{height}")
            self._stream = self._container.add_stream("libx264", rate=Fraction(self._fps, 1))
            self._stream.width, self._stream.height = width, height
            self._stream.pix_fmt = "yuv420p"
            self._stream.options = {"crf": str(self._crf)}
        for frame in frames:
            for packet in self._stream.encode(self._av.VideoFrame.from_ndarray(frame, format="rgb24")):
                self._container.mux(packet)

    def close(self) -> Path:
        """Flush the encoder, close the file and rename it; returns the final path."""
        if self._stream is not None:
            for packet in self._stream.encode():  # flush the encoder
                self._container.mux(packet)
        self._container.close()
        self._file.close()
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Close and delete the partial file (errors while closing do not hide the one that caused the abort)."""
        with contextlib.suppress(Exception):
            self._container.close()
        self._file.close()
        self._tmp.unlink(missing_ok=True)


class PngSink:
    """A folder of numbered PNG frames (``frame_00000.png`` ...), lossless; the folder appears when complete."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = Path(folder)
        if self.path.exists():
            raise FileExistsError(f"{self.path} exists already")
        self._tmp = _partial(self.path)
        shutil.rmtree(self._tmp, ignore_errors=True)
        self._tmp.mkdir(parents=True)
        self._count = 0

    def write(self, frames: np.ndarray) -> None:
        """Save frames (n, H, W, 3) uint8 as the next numbered PNGs."""
        from PIL import Image

        for frame in frames:
            Image.fromarray(frame).save(self._tmp / f"frame_{self._count:05d}.png", compress_level=4)
            self._count += 1

    def close(self) -> Path:
        """Rename the finished folder; returns its path."""
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Delete the partial folder."""
        shutil.rmtree(self._tmp, ignore_errors=True)


def stream_decode(latents: Tensor, decoder: FrameDecoder, sink: FrameSink, *,
                  on_frame: Callable[[int, int], None] | None = None) -> tuple[Path, int]:
    """Decode ``latents`` (1, C, F, h, w) frame by frame into ``sink``; returns (the file, video frames written).

    ``on_frame(done, total)`` runs after each latent frame (progress); an exception from it (a cancel) or from the
    decoder aborts the sink, so nothing partial is left, and propagates.
    """
    written = 0
    try:
        if latents.ndim != 5 or latents.shape[0] != 1 or latents.shape[2] == 0:
            raise ValueError(f"stream_decode takes one video's latents (1, C, F >= 1, h, w), got {tuple(latents.shape)}")
        total = latents.shape[2]
        with torch.no_grad():
            for i in range(total):
                frames = to_uint8(decoder(latents[:, :, i:i + 1]))  # (n, H, W, 3)
                sink.write(frames)
                written += frames.shape[0]
                del frames
                if on_frame is not None:
                    on_frame(i + 1, total)
        path = sink.close()
    except BaseException:
        sink.abort()
        raise
    return path, written
