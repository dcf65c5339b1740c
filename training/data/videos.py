"""Video clips for real-data training: a captions table (CSV / JSONL) over a folder of videos, decoded with imageio.

Each clip is resampled to the target frame rate (nearest source frame), centre-cropped to the target aspect ratio and
resized, and cut to ``num_frames`` = 4k + 1 frames (Wan's VAE: 81 frames -> 21 latent frames at 16 fps). A bad row or
file raises :class:`~training.data.report.SkipItem` so the caller counts it and goes on.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .report import PrepareReport, SkipItem

PATH_KEYS = ("path", "video", "file")
"""Accepted names of the video column / key, in order of preference."""
CAPTION_KEYS = ("caption", "text", "prompt")
"""Accepted names of the caption column / key, in order of preference."""


@dataclass(kw_only=True, slots=True)
class VideoConfig:
    """How source videos become model clips (defaults: Wan2.1 at 480p)."""

    fps: float = 16.0
    """Target frame rate in frames/s (Wan: 16)."""
    height: int = 480
    """Target frame height in pixels (multiple of 16: VAE 8x, then the DiT's 2x2 patches)."""
    width: int = 832
    """Target frame width in pixels (multiple of 16)."""
    num_frames: int = 81
    """Frames per clip, 4k + 1 (81 frames = 21 latent frames = 5.06 s at 16 fps)."""
    min_source_fps: float = 15.0
    """Sources below this frame rate in frames/s are skipped (upsampling repeats frames, which teaches stutter)."""

    def __post_init__(self) -> None:
        if self.fps <= 0 or self.min_source_fps < 0:
            raise ValueError(f"fps must be positive and min_source_fps non-negative, got {self.fps}, "
                             f"{self.min_source_fps}")
        if self.height <= 0 or self.width <= 0 or self.height % 16 or self.width % 16:
            raise ValueError(f"height and width must be positive multiples of 16, got {self.height}x{self.width}")
        if self.num_frames < 1 or (self.num_frames - 1) % 4:
            raise ValueError(f"num_frames must be 4k + 1 (the VAE's 4x temporal stride), got {self.num_frames}")

    @property
    def latent_frames(self) -> int:
        """Latent frames per clip, (num_frames - 1) / 4 + 1."""
        return (self.num_frames - 1) // 4 + 1


@dataclass(kw_only=True, slots=True, frozen=True)
class ClipSource:
    """One row of the captions table."""

    path: Path
    """Video file (relative paths are resolved against the videos folder)."""
    name: str
    """The path as written in the table, relative to the videos folder (the cache key uses it)."""
    caption: str
    """Caption text, stripped."""


def _pick(row: dict, keys: tuple[str, ...]) -> object:
    return next((row[k] for k in keys if k in row and row[k] is not None), None)


def _rows(captions: Path) -> list[tuple[str, dict | None]]:
    """(where, row) for every row of a CSV or JSONL file; row is None when the line is not a JSON object."""
    text = captions.read_text(encoding="utf-8-sig")
    if captions.suffix.lower() == ".csv":
        reader = csv.DictReader(text.splitlines())
        fields = [f.strip().lower() for f in reader.fieldnames or []]
        if not any(k in fields for k in PATH_KEYS) or not any(k in fields for k in CAPTION_KEYS):
            raise ValueError(f"{captions}: CSV needs a video column ({'/'.join(PATH_KEYS)}) and a caption column "
                             f"({'/'.join(CAPTION_KEYS)}), found {fields}")
        return [(f"{captions.name}:{i + 2}", {k.strip().lower(): v for k, v in row.items() if k is not None})
                for i, row in enumerate(reader)]
    out: list[tuple[str, dict | None]] = []
    for i, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        out.append((f"{captions.name}:{i + 1}", row if isinstance(row, dict) else None))
    return out


def read_captions(captions: Path, videos_dir: Path, report: PrepareReport) -> list[ClipSource]:
    """Rows of a captions table: CSV with columns ``path,caption`` or JSONL lines ``{"path": ..., "caption": ...}``.

    ``video`` / ``file`` are accepted for the path and ``text`` / ``prompt`` for the caption. Rows that are not JSON
    objects, lack a path, or have an empty caption are counted in ``report`` (``bad_row``, ``empty_caption``) with one
    warning each; the rest are returned in file order. Whether the video exists is checked when it is loaded.

    Raises:
        FileNotFoundError: The captions file does not exist.
        ValueError: A CSV file has no recognisable path or caption column.

    """
    if not captions.is_file():
        raise FileNotFoundError(f"captions file not found: {captions}")
    out = []
    for where, row in _rows(captions):
        path = None if row is None else _pick(row, PATH_KEYS)
        caption = None if row is None else _pick(row, CAPTION_KEYS)
        if row is None or not isinstance(path, str) or not path.strip():
            report.skip(where, SkipItem("bad_row", "not an object with a non-empty video path"))
            continue
        if not isinstance(caption, str) or not caption.strip():
            report.skip(f"{where} ({path})", SkipItem("empty_caption", "no caption text"))
            continue
        full = Path(path.strip())
        full = full if full.is_absolute() else videos_dir / full
        out.append(ClipSource(path=full, name=path.strip(), caption=caption.strip()))
    return out


def source_indices(num_frames: int, source_fps: float, fps: float) -> list[int]:
    """Source frame of each target frame: the nearest one in time, round(j * source_fps / fps) for j < num_frames."""
    return [math.floor(j * source_fps / fps + 0.5) for j in range(num_frames)]


def crop_box(height: int, width: int, target_height: int, target_width: int) -> tuple[int, int, int, int]:
    """Centred (left, top, right, bottom) pixel box of the source with the target's aspect ratio (rounded)."""
    if width * target_height > height * target_width:  # source is wider: crop the sides
        w = round(height * target_width / target_height)
        return ((width - w) // 2, 0, (width - w) // 2 + w, height)
    h = round(width * target_height / target_width)
    return (0, (height - h) // 2, width, (height - h) // 2 + h)


def resize_frame(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """(h, w, 3) uint8 -> (height, width, 3) uint8: centre crop to the target aspect, then bicubic resize.

    Cropping first keeps the cut-off borders out of the resampling filter's support.
    """
    image = Image.fromarray(frame).crop(crop_box(frame.shape[0], frame.shape[1], height, width))
    return np.asarray(image.resize((width, height), Image.Resampling.BICUBIC))


def load_clip(path: Path, cfg: VideoConfig) -> Tensor:
    """Decode the first ``cfg.num_frames`` target frames of a video.

    Returns:
        (3, T, H, W) uint8 frames (T = ``cfg.num_frames``, H x W = ``cfg.height`` x ``cfg.width``).

    Raises:
        SkipItem: ``missing_file``, ``corrupt`` (cannot be opened or decoded, no frame rate), ``low_fps``, or
            ``too_short`` (fewer source frames than the clip needs at the target rate).

    """
    import imageio.v2 as iio  # deferred: imageio-ffmpeg locates its binary on import

    if not path.is_file():
        raise SkipItem("missing_file", "no such file")
    try:
        reader = iio.get_reader(path, format="FFMPEG")
    except Exception as err:  # imageio/ffmpeg raise OSError, RuntimeError, ValueError... for unreadable files
        raise SkipItem("corrupt", f"cannot open: {err}") from err
    try:
        try:
            source_fps = float(reader.get_meta_data().get("fps") or 0.0)
        except Exception as err:  # damaged header
            raise SkipItem("corrupt", f"cannot read the frame rate: {err}") from err
        if not math.isfinite(source_fps) or source_fps <= 0:
            raise SkipItem("corrupt", "no frame rate in the container")
        if source_fps < cfg.min_source_fps:
            raise SkipItem("low_fps", f"{source_fps:g} fps < min_source_fps {cfg.min_source_fps:g}")
        wanted = source_indices(cfg.num_frames, source_fps, cfg.fps)
        frames: list[np.ndarray] = []
        decoded = 0
        try:
            for frame in reader:
                while len(frames) < len(wanted) and wanted[len(frames)] == decoded:
                    frames.append(resize_frame(np.asarray(frame)[..., :3], cfg.height, cfg.width))
                decoded += 1
                if len(frames) == len(wanted):
                    break
        except Exception as err:  # truncated or damaged streams fail mid-decode
            raise SkipItem("corrupt", f"decoding failed after {decoded} frames: {err}") from err
        if decoded == 0:
            raise SkipItem("corrupt", "no decodable frames")
        if len(frames) < len(wanted):
            seconds = (cfg.num_frames - 1) / cfg.fps
            raise SkipItem("too_short", f"needs {wanted[-1] + 1} frames at {source_fps:g} fps ({seconds:.2f} s), "
                                        f"has {decoded}")
    finally:
        reader.close()
    return torch.from_numpy(np.stack(frames)).permute(3, 0, 1, 2).contiguous()  # (T, H, W, 3) -> (3, T, H, W)


def to_unit_range(frames: Tensor) -> Tensor:
    """uint8 pixels in [0, 255] -> float32 in [-1, 1], the VAE's input range."""
    return frames.float() / 127.5 - 1.0
