"""Frame sources for evaluation: an mp4 streamed in batches (imageio-ffmpeg), or frames already in memory.

Both yield ``(B, 3, H, W)`` float32 RGB batches in [0, 1] on the CPU, so a 60-s video (960 frames at 16 fps) is
never whole in memory: the evaluator turns each batch into features and keeps only those.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor


class FrameSource(Protocol):
    """Something that yields a video's frames in order, in batches."""

    name: str
    """Label used in results and progress bars (the file stem for a video file)."""
    fps: float
    """Frames per second (> 0)."""
    estimated_frames: int | None
    """Frame count if known in advance (exact for in-memory frames, duration x fps for files), else None."""

    def batches(self, batch_size: int) -> Iterator[Tensor]:
        """Yield (B, 3, H, W) float32 RGB batches in [0, 1] on the CPU, B <= batch_size, in frame order."""
        ...


class VideoFile:
    """A video file decoded by imageio-ffmpeg's frame pipe, ``batch_size`` frames at a time.

    The constructor reads only the header (fps, size, duration). The exact frame count is known after a full pass:
    :attr:`frames_read`.
    """

    def __init__(self, path: str | Path, fps: float | None = None) -> None:
        """Open ``path`` and read its header; ``fps`` overrides the container's frame rate (needed when it has none).

        Raises:
            FileNotFoundError: no such file.
            ValueError: ffmpeg cannot read the file, or no usable frame rate.

        """
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"video not found: {self.path}")
        self.name = self.path.stem
        gen, meta = self._open()
        gen.close()
        self.width, self.height = (int(v) for v in meta["size"])
        container_fps = float(meta.get("fps") or 0.0)
        self.fps = float(fps) if fps is not None else container_fps
        if not (math.isfinite(self.fps) and self.fps > 0):
            raise ValueError(f"{self.path}: no frame rate in the container; pass fps explicitly")
        duration = float(meta.get("duration") or 0.0)
        self.estimated_frames: int | None = round(duration * container_fps) if duration > 0 and container_fps > 0 else None
        self.frames_read = 0

    def _open(self) -> tuple[Any, dict]:
        """Start ffmpeg: (frame generator positioned after the header, header dict)."""
        import imageio_ffmpeg  # deferred: optional dependency (eval extra), locates its binary on import

        gen = imageio_ffmpeg.read_frames(str(self.path), pix_fmt="rgb24")
        try:
            meta = next(gen)
        except (OSError, RuntimeError, StopIteration) as err:
            gen.close()
            raise ValueError(f"cannot read video {self.path}: {err}") from err
        return gen, meta

    def batches(self, batch_size: int) -> Iterator[Tensor]:
        """Yield (B, 3, H, W) float32 RGB batches in [0, 1]; sets :attr:`frames_read` when the pass ends."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        gen, _ = self._open()
        count, pending = 0, []
        try:
            for raw in gen:
                pending.append(np.frombuffer(raw, dtype=np.uint8).reshape(self.height, self.width, 3))
                if len(pending) == batch_size:
                    count += len(pending)
                    yield _to_batch(np.stack(pending))
                    pending = []
            if pending:
                count += len(pending)
                yield _to_batch(np.stack(pending))
        except (OSError, RuntimeError) as err:
            raise ValueError(f"decoding {self.path} failed after {count} frames: {err}") from err
        finally:
            gen.close()
        self.frames_read = count


def _to_batch(frames: np.ndarray) -> Tensor:
    """(B, H, W, 3) uint8 -> (B, 3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0)


class InMemoryFrames:
    """Frames already decoded (a numpy array or torch tensor), served in batches like a file.

    Accepts ``(T, 3, H, W)`` or ComfyUI's ``(T, H, W, 3)`` layout, float in [0, 1] or uint8 in [0, 255]. Batches are
    converted one at a time, so a tensor on the GPU is copied to the CPU batch by batch.
    """

    def __init__(self, frames: Any, fps: float, *, layout: str = "auto", name: str = "frames") -> None:
        """Wrap ``frames``; ``layout`` is "tchw", "thwc" or "auto" (decided by which axis has size 3).

        Raises:
            ValueError: not 4-D, no frame, an ambiguous or wrong layout, or fps not positive.

        """
        shape = tuple(frames.shape)
        if len(shape) != 4 or shape[0] < 1:
            raise ValueError(f"frames must be (T, 3, H, W) or (T, H, W, 3) with T >= 1, got {shape}")
        if layout == "auto":
            if (shape[1] == 3) == (shape[3] == 3):
                raise ValueError(f"cannot tell the layout of frames with shape {shape}; pass layout='tchw' or 'thwc'")
            layout = "tchw" if shape[1] == 3 else "thwc"
        if layout not in ("tchw", "thwc") or shape[1 if layout == "tchw" else 3] != 3:
            raise ValueError(f"frames of shape {shape} do not have layout {layout!r} with 3 channels")
        if not (math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be positive, got {fps}")
        self.frames, self.layout, self.fps, self.name = frames, layout, float(fps), name
        self.estimated_frames: int | None = shape[0]

    def batches(self, batch_size: int) -> Iterator[Tensor]:
        """Yield (B, 3, H, W) float32 RGB batches in [0, 1] on the CPU."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        for start in range(0, self.frames.shape[0], batch_size):
            chunk = self.frames[start : start + batch_size]
            x = chunk.detach().cpu() if isinstance(chunk, Tensor) else torch.from_numpy(np.ascontiguousarray(chunk))
            x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
            yield x.permute(0, 3, 1, 2).contiguous() if self.layout == "thwc" else x  # (B, 3, H, W)
