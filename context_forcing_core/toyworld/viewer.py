"""A small viewer for toy videos: animations, frame strips and line plots (Pillow only)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .metrics import as_frames

COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207), (0, 0, 0), (255, 200, 0))
"""Line colours of :func:`line_plot`, in order."""


def _to_uint8(frames: Any) -> np.ndarray:
    """(T, H, W, 3) uint8 from (T, 3, H, W) floats in [0, 1]."""
    arr = as_frames(frames)
    return (np.clip(np.moveaxis(arr, 1, -1), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _upscale(image: np.ndarray, scale: int) -> np.ndarray:
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    return np.repeat(np.repeat(image, scale, axis=-3), scale, axis=-2)


def _mp4_writer() -> Any:
    try:
        import imageio.v2 as imageio
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        return None
    return imageio


def save_video(frames: Any, path: str | Path, fps: float = 4, scale: int = 4) -> Path:
    """Write a video, enlarged ``scale`` times with nearest-neighbour pixels.

    The format follows the suffix: ``.gif`` and ``.png`` (animated PNG) use Pillow; ``.mp4`` needs ``imageio`` and
    ``imageio-ffmpeg`` (pinned for tests in requirements-dev.txt; optional for users).

    Args:
        frames: (T, 3, H, W) RGB in [0, 1].
        path: output file.
        fps: playback frames per second (4 = toy real time).
        scale: integer enlargement.

    Returns:
        The path written.

    Raises:
        ValueError: unsupported suffix, mp4 without imageio-ffmpeg, bad fps or scale.

    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".png", ".mp4"):
        raise ValueError(f"unsupported video suffix {path.suffix!r}; use .gif, .png (animated) or .mp4")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    images = _upscale(_to_uint8(frames), scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".mp4":
        imageio = _mp4_writer()
        if imageio is None:
            raise ValueError("writing .mp4 needs `pip install imageio imageio-ffmpeg`; use .gif or .png instead")
        imageio.mimwrite(path, list(images), fps=fps, macro_block_size=1)
        return path
    pil = [Image.fromarray(im) for im in images]
    pil[0].save(path, save_all=True, append_images=pil[1:], duration=round(1000 / fps), loop=0)
    return path


def strip_image(frames: Any, every: int = 8, scale: int = 2, gap: int = 2) -> Image.Image:
    """Every ``every``-th frame side by side, separated by ``gap`` white pixels.

    Returns:
        RGB image of size (n * W * scale + (n - 1) * gap, H * scale) with n = ceil(T / every).

    """
    if every < 1 or gap < 0:
        raise ValueError(f"every must be >= 1 and gap >= 0, got every={every}, gap={gap}")
    images = _upscale(_to_uint8(frames)[::every], scale)
    n, h, w, _ = images.shape
    out = np.full((h, n * w + (n - 1) * gap, 3), 255, dtype=np.uint8)
    for i, im in enumerate(images):
        out[:, i * (w + gap): i * (w + gap) + w] = im
    return Image.fromarray(out)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType
        return ImageFont.load_default()


def line_plot(
    series: dict[str, tuple[Any, Any]],
    *,
    x_label: str,
    y_label: str,
    log_x: bool = False,
    x_ticks: Any = None,
    threshold: float | None = None,
    markers: bool = False,
    size: tuple[int, int] = (640, 400),
) -> Image.Image:
    """Lines on shared axes, legend on the right (Pillow only); NaN points are left out.

    Args:
        series: legend label -> (x values, y values), equal lengths; the first series is drawn on top.
        x_label: text under the x axis.
        y_label: text above the y axis.
        log_x: logarithmic x axis (x values must be positive).
        x_ticks: x positions of the ticks (default: 6 evenly spaced).
        threshold: drawn as a dashed grey horizontal line when given.
        markers: draw a dot at every point.
        size: image (width, height) in pixels, legend included.

    Returns:
        RGB image of ``size``.

    """
    if not series:
        raise ValueError("line_plot needs at least one series")
    width, height = size
    if width < 200 or height < 150:
        raise ValueError(f"size must be at least (200, 150), got {size}")
    data = {k: (np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)) for k, (x, y) in series.items()}
    if any(x.shape != y.shape or x.ndim != 1 for x, y in data.values()):
        raise ValueError("every series needs 1-D x and y of the same length")
    font, small = _font(13), _font(11)
    legend_w = 30 + max(int(small.getlength(k)) for k in data) if len(data) > 1 else 0
    left, right, top, bottom = 62, 16 + legend_w, 28, 48
    xs = np.concatenate([x[np.isfinite(y)] for x, y in data.values()])
    ys = np.concatenate([y[np.isfinite(y)] for _, y in data.values()])
    if log_x and (xs <= 0).any():
        raise ValueError("log_x needs positive x values")
    ticks = np.asarray(x_ticks if x_ticks is not None else np.linspace(xs.min(), xs.max(), 6), dtype=np.float64)
    tx = np.log if log_x else (lambda v: v)
    lo, hi = float(tx(min(xs.min(), ticks.min()))), float(tx(max(xs.max(), ticks.max())))
    hi = hi if hi > lo else lo + 1.0
    y_max = max(max(ys.max(initial=0.0), threshold or 0.0) * 1.15, 1e-3)

    def x_of(v: float) -> float:
        return left + (float(tx(v)) - lo) / (hi - lo) * (width - left - right)

    def y_of(v: float) -> float:
        return height - bottom - v / y_max * (height - top - bottom)

    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    for t in ticks:
        x = x_of(float(t))
        draw.line([x, height - bottom, x, height - bottom + 4], fill="black")
        draw.line([x, top, x, height - bottom], fill=(225, 225, 225))
        draw.text((x, height - bottom + 6), f"{t:g}", fill="black", font=small, anchor="mt")
    draw.text(((left + width - right) / 2, height - 6), x_label, fill="black", font=font, anchor="mb")
    step = 10 ** math.floor(math.log10(y_max / 4))
    step *= next(m for m in (1, 2, 5, 10) if y_max / (step * m) <= 6)
    for k in range(int(y_max / step) + 1):
        y = y_of(k * step)
        draw.line([left - 4, y, left, y], fill="black")
        draw.text((left - 6, y), f"{k * step:.3g}", fill="black", font=small, anchor="rm")
    draw.text((6, top - 8), y_label, fill="black", font=font, anchor="lm")
    if threshold is not None:
        y = y_of(threshold)
        for x in range(left, width - right, 12):
            draw.line([x, y, min(x + 6, width - right), y], fill=(110, 110, 110), width=2)
        draw.text((width - right - 4, y - 3), f"threshold {threshold:.3g}", fill=(90, 90, 90), font=small, anchor="rb")
    for i, (label, (x, y)) in reversed(list(enumerate(data.items()))):  # the first series on top
        colour = COLOURS[i % len(COLOURS)]
        pts = [(x_of(a), y_of(b)) for a, b in zip(x, y) if np.isfinite(b)]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=3 if markers else 2, joint="curve")
        for px, py in pts if markers else []:
            draw.ellipse([px - 4, py - 4, px + 4, py + 4], fill=colour)
        if legend_w:
            ly = top + 8 + 18 * i
            draw.line([width - legend_w, ly, width - legend_w + 22, ly], fill=colour, width=3)
            draw.text((width - legend_w + 28, ly), label, fill="black", font=small, anchor="lm")
    return img
