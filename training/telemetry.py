"""Run telemetry: metrics as JSON lines (always) and TensorBoard scalars, images and videos (when installed).

``metrics.jsonl`` in the run folder gets one JSON object per :meth:`MetricsLogger.log` call, appended, so a resumed
run continues the same file. TensorBoard is optional (``pip install tensorboard``); its event files go to
``<out_dir>/tensorboard``::

    tensorboard --logdir outputs/<run>

Videos are written as animated GIF image summaries encoded with Pillow (TensorBoard's Images tab plays them), so
``add_video`` needs neither moviepy nor ffmpeg. Only rank 0 should write: other ranks pass ``enabled=False``.
"""

from __future__ import annotations

import importlib.util
import io
import json
import math
import numbers
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from PIL import Image


def tensorboard_available() -> bool:
    """Whether the ``tensorboard`` package (needed by ``torch.utils.tensorboard``) is importable."""
    return importlib.util.find_spec("tensorboard") is not None


def _scalar(value: Any) -> float | int | bool | str | None:
    """A JSON-ready scalar from a Python, numpy or 0-d torch number (strings and None pass through)."""
    if value is None or isinstance(value, str | bool):
        return value
    if hasattr(value, "item"):  # numpy scalars, 0-d arrays and tensors
        value = value.item()
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"metric values must be numbers, strings or None, got {type(value).__name__}")


def _to_uint8_hwc(frames: Any) -> np.ndarray:
    """(T, 3, H, W) floats in [0, 1] (numpy or torch) -> (T, H, W, 3) uint8; uint8 input is only transposed."""
    if hasattr(frames, "detach"):
        frames = frames.detach().cpu().numpy()
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[1] != 3:
        raise ValueError(f"frames must have shape (T, 3, H, W), got {arr.shape}")
    arr = np.moveaxis(arr, 1, -1)
    if arr.dtype == np.uint8:
        return arr
    return (np.clip(arr.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def gif_bytes(frames: Any, fps: float = 4) -> bytes:
    """An animated GIF of frames (T, 3, H, W) in [0, 1] (or uint8), looping, ``fps`` frames per second."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    images = [Image.fromarray(im) for im in _to_uint8_hwc(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0)
    return buffer.getvalue()


class MetricsLogger:
    """Appends metrics to ``<out_dir>/metrics.jsonl`` and mirrors them to TensorBoard.

    Args:
        out_dir: run folder (created on first use).
        tensorboard: True requires TensorBoard, False never uses it, None (default) uses it when installed.
        enabled: False makes every method a no-op and writes no file (ranks other than 0).
        flush_every: write the JSONL buffer to disk every this many records (and on :meth:`flush` / :meth:`close`).

    Raises:
        ImportError: ``tensorboard=True`` without the tensorboard package.

    """

    def __init__(
        self, out_dir: str | Path, *, tensorboard: bool | None = None, enabled: bool = True, flush_every: int = 10
    ) -> None:
        if flush_every < 1:
            raise ValueError(f"flush_every must be >= 1, got {flush_every}")
        if tensorboard and not tensorboard_available():
            raise ImportError("tensorboard=True needs `pip install tensorboard`")
        self.out_dir = Path(out_dir)
        self.enabled = enabled
        self.flush_every = flush_every
        self.path = self.out_dir / "metrics.jsonl"
        self._use_tensorboard = enabled and (tensorboard_available() if tensorboard is None else tensorboard)
        self._file: io.TextIOBase | None = None
        self._writer = None
        self._pending = 0

    @property
    def tensorboard(self) -> bool:
        """Whether TensorBoard event files are written."""
        return self._use_tensorboard

    @property
    def tensorboard_dir(self) -> Path:
        """Folder of the TensorBoard event files."""
        return self.out_dir / "tensorboard"

    def _summary_writer(self):
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter  # imported lazily: tensorboard is optional

            self._writer = SummaryWriter(log_dir=str(self.tensorboard_dir))
        return self._writer

    def log(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Record one set of metrics.

        Args:
            metrics: name -> number (Python, numpy or 0-d torch); strings and None go to JSONL only.
            step: global step; defaults to ``metrics["step"]``. Written first in the JSON object.

        """
        if not self.enabled:
            return
        record = {k: _scalar(v) for k, v in metrics.items()}
        step = record.pop("step", None) if step is None else int(step)
        record.pop("step", None)
        if self._file is None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a")
        self._file.write(json.dumps({"step": step} | record) + "\n")
        self._pending += 1
        if self._pending >= self.flush_every:
            self.flush()
        if self._use_tensorboard:
            writer = self._summary_writer()
            for name, value in record.items():
                if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                    writer.add_scalar(name, value, global_step=step)

    def add_image(self, tag: str, image: Any, step: int) -> None:
        """An image to TensorBoard (no-op without it): a PIL image, (H, W, 3) uint8, or (3, H, W) floats in [0, 1]."""
        if not self._use_tensorboard:
            return
        if isinstance(image, Image.Image):
            image = np.asarray(image.convert("RGB"))
        if hasattr(image, "detach"):
            image = image.detach().cpu().numpy()
        image = np.asarray(image)
        layout = "HWC" if image.ndim == 3 and image.shape[-1] == 3 else "CHW"
        self._summary_writer().add_image(tag, image, global_step=step, dataformats=layout)

    def add_video(self, tag: str, frames: Any, step: int, fps: float = 4) -> None:
        """A video (T, 3, H, W) in [0, 1] to TensorBoard as an animated GIF (no-op without TensorBoard)."""
        if not self._use_tensorboard:
            return
        from tensorboard.compat.proto.summary_pb2 import Summary

        _, height, width, _ = _to_uint8_hwc(frames[:1]).shape
        image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=gif_bytes(frames, fps))
        # SummaryWriter.add_video would need moviepy; its file writer takes any Summary proto
        self._summary_writer()._get_file_writer().add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)

    def flush(self) -> None:
        """Write buffered JSON lines and TensorBoard events to disk."""
        if self._file is not None:
            self._file.flush()
        self._pending = 0
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Flush and close the files; the logger may be used again (files reopen in append mode)."""
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> MetricsLogger:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
