"""Evaluate generated videos: features once per frame, then every curve and score from the cached features.

One video: :func:`evaluate_video` -> :class:`VideoResult` (JSON-ready). A folder: :func:`evaluate_folder` writes
``<out>/videos/<stem>.json`` per video and ``<out>/aggregate.json`` (mean and std over videos, see
:func:`aggregate_results`). Prompts rule: a text file with one prompt per line, line k for the k-th ``*.mp4`` of the
folder sorted by file name; the line count must equal the video count.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..atomic import write_atomic
from .backbones import Backbone
from .consistency import (
    clip_averaged,
    first_frame_curve,
    start_end_delta,
    summarize_videos,
    text_alignment_curve,
    text_similarity,
    vbench_consistency,
    window_indices,
)
from .video import FrameSource, VideoFile

DEFAULT_TIMESTAMPS_S = (10.0, 20.0, 30.0, 40.0, 50.0, 60.0)
"""Curve timestamps in seconds (the paper's 10, 20, ..., 60 s)."""


@dataclass(kw_only=True, slots=True)
class EvalConfig:
    """What to compute from the features."""

    timestamps_s: tuple[float, ...] = DEFAULT_TIMESTAMPS_S
    """Curve window centres in seconds; those whose window holds no frame of a video are dropped for that video."""
    half_width_s: float = 0.5
    """Half window length in seconds (the paper: 0.5, i.e. 17 frames at 16 fps)."""
    clip_s: float = 2.0
    """VBench-Long clip length in seconds for the ``*_2s`` scores."""
    drift_fraction: float = 0.15
    """Fraction of frames at each end for the start-vs-end deltas."""
    batch_size: int = 32
    """Frames decoded and embedded per batch."""
    progress: bool = True
    """Show tqdm progress bars (videos, and frames within a video)."""

    def __post_init__(self) -> None:
        if not self.timestamps_s or self.half_width_s < 0 or self.clip_s <= 0 or self.batch_size < 1:
            raise ValueError(f"need timestamps, half_width_s >= 0, clip_s > 0 and batch_size >= 1, got "
                             f"{self.timestamps_s}, {self.half_width_s}, {self.clip_s}, {self.batch_size}")
        if not 0 < self.drift_fraction <= 0.5:
            raise ValueError(f"drift_fraction must be in (0, 0.5], got {self.drift_fraction}")


@dataclass(kw_only=True, slots=True)
class VideoResult:
    """Metrics of one video; cosines in [-1, 1], VBench scores in [0, 1], not multiplied by 100."""

    name: str
    """Video name (file stem)."""
    prompt: str
    """The prompt the video was generated from."""
    fps: float
    """Frames per second used for the time axis."""
    num_frames: int
    """Frames decoded."""
    timestamps_s: list[float]
    """(K,) curve timestamps kept for this video (windows that hold at least one frame)."""
    curves: dict[str, list[float]] = field(default_factory=dict)
    """(K,) curves: ``dinov2`` and ``clip_f`` (first-frame similarity), ``clip_t`` (text alignment)."""
    scores: dict[str, float] = field(default_factory=dict)
    """Scalars: ``subject_consistency`` (DINO), ``background_consistency`` (CLIP), their VBench-Long ``*_2s``
    variants, and ``clip_t_start_end_delta`` (late - early CLIP-T)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every field."""
        return asdict(self)


def usable_timestamps(timestamps_s: Sequence[float], num_frames: int, fps: float, half_width_s: float) -> list[float]:
    """The timestamps whose window holds at least one frame of the video (the window is clipped to the video)."""
    return [float(t) for t in timestamps_s if len(window_indices(num_frames, fps, t, half_width_s)) > 0]


def extract_features(source: FrameSource, backbones: Mapping[str, Backbone], batch_size: int,
                     progress: bool = False) -> dict[str, torch.Tensor]:
    """Stream the source once and embed every batch with every backbone.

    Returns:
        {kind: (T, D) float32 CPU features}; only features are kept, never the frames.

    """
    from tqdm.auto import tqdm

    if not backbones:
        raise ValueError("no backbone to evaluate with")
    parts: dict[str, list[torch.Tensor]] = {kind: [] for kind in backbones}
    with tqdm(total=source.estimated_frames, desc=source.name, unit="frame", leave=False, disable=not progress) as bar:
        for batch in source.batches(batch_size):  # (B, 3, H, W) in [0, 1] on the CPU
            for kind, backbone in backbones.items():
                parts[kind].append(backbone.embed_images(batch))  # (B, D)
            bar.update(len(batch))
    if not next(iter(parts.values())):
        raise ValueError(f"{source.name}: no frame decoded")
    return {kind: torch.cat(chunks) for kind, chunks in parts.items()}


def evaluate_video(source: FrameSource, prompt: str, backbones: Mapping[str, Backbone],
                   cfg: EvalConfig | None = None) -> VideoResult:
    """All metrics of one video that the given backbones allow.

    ``dinov2`` gives the DINOv2 curve; ``dino`` the VBench subject consistency; ``clip`` the CLIP-F and CLIP-T curves,
    VBench background consistency and the CLIP-T start-end delta.

    Raises:
        ValueError: no backbone, a video with fewer than two frames, or an empty prompt with CLIP.

    """
    cfg = cfg or EvalConfig()
    feats = extract_features(source, backbones, cfg.batch_size, cfg.progress)
    num_frames = len(next(iter(feats.values())))
    if num_frames < 2:
        raise ValueError(f"{source.name}: consistency needs at least two frames, got {num_frames}")
    times = usable_timestamps(cfg.timestamps_s, num_frames, source.fps, cfg.half_width_s)
    result = VideoResult(name=source.name, prompt=prompt, fps=source.fps, num_frames=num_frames, timestamps_s=times)
    window = {"fps": source.fps, "timestamps_s": times, "half_width_s": cfg.half_width_s}
    if "dinov2" in feats:
        result.curves["dinov2"] = first_frame_curve(feats["dinov2"], **window).tolist()
    if "dino" in feats:
        result.scores["subject_consistency"] = vbench_consistency(feats["dino"])
        result.scores["subject_consistency_2s"] = clip_averaged(feats["dino"], source.fps, cfg.clip_s)
    if "clip" in feats:
        if not prompt.strip():
            raise ValueError(f"{source.name}: empty prompt (CLIP-T needs the text)")
        text = backbones["clip"].embed_text([prompt])[0]  # (D,)
        result.curves["clip_f"] = first_frame_curve(feats["clip"], **window).tolist()
        result.curves["clip_t"] = text_alignment_curve(feats["clip"], text, **window).tolist()
        result.scores["background_consistency"] = vbench_consistency(feats["clip"])
        result.scores["background_consistency_2s"] = clip_averaged(feats["clip"], source.fps, cfg.clip_s)
        per_frame = text_similarity(feats["clip"], text)  # (T,)
        result.scores["clip_t_start_end_delta"] = start_end_delta(per_frame, cfg.drift_fraction)
    return result


def aggregate_results(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and std over videos of every score, and of every curve per timestamp (per-video dicts or loaded JSON).

    Video-weighted (each video's score, itself a mean over its frames or windows, counts once; see
    :func:`~context_forcing_core.eval.consistency.summarize_videos`); a curve point averages the videos whose window
    at that timestamp holds frames, so its ``num_videos`` may shrink at late timestamps.
    """
    scores = sorted({k for r in results for k in r["scores"]})
    curves = sorted({k for r in results for k in r["curves"]})
    out: dict[str, Any] = {"num_videos": len(results), "aggregation": "video-weighted mean; std with ddof=0",
                           "scores": {}, "curves": {}}
    for name in scores:
        out["scores"][name] = asdict(summarize_videos([r["scores"].get(name, float("nan")) for r in results]))
    for name in curves:
        points: dict[float, list[float]] = {}
        for r in results:
            for t, v in zip(r["timestamps_s"], r["curves"].get(name, [])):
                points.setdefault(float(t), []).append(float(v))
        summaries = [summarize_videos(points[t]) for t in sorted(points)]
        out["curves"][name] = {"timestamps_s": sorted(points), "mean": [s.mean for s in summaries],
                               "std": [s.std for s in summaries], "num_videos": [s.num_videos for s in summaries]}
    return out


def list_videos(videos_dir: str | Path) -> list[Path]:
    """The ``*.mp4`` files of a folder (not recursive), sorted by file name.

    Raises:
        FileNotFoundError: the folder does not exist or holds no mp4.

    """
    folder = Path(videos_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"videos folder not found: {folder}")
    videos = sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() == ".mp4"), key=lambda p: p.name)
    if not videos:
        raise FileNotFoundError(f"no .mp4 file in {folder}")
    return videos


def read_prompts(prompts_file: str | Path, videos: Sequence[Path]) -> list[str]:
    """Prompt of each video: line k of the file (UTF-8, stripped) for ``videos[k]``, videos sorted by file name.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the line count differs from the video count, or a line is blank.

    """
    path = Path(prompts_file)
    if not path.is_file():
        raise FileNotFoundError(f"prompts file not found: {path}")
    lines = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    if len(lines) != len(videos):
        raise ValueError(f"{path} has {len(lines)} lines but there are {len(videos)} videos; it needs one prompt "
                         f"per line, in the order of the sorted video names ({videos[0].name}, ...)")
    blank = [i + 1 for i, line in enumerate(lines) if not line]
    if blank:
        raise ValueError(f"{path}: blank prompt on line(s) {blank[:5]}")
    return lines


def evaluate_folder(videos_dir: str | Path, prompts_file: str | Path, out_dir: str | Path,
                    backbones: Mapping[str, Backbone], cfg: EvalConfig | None = None,
                    fps: float | None = None) -> dict[str, Any]:
    """Evaluate every mp4 of a folder; write per-video JSON and the aggregate, and return the aggregate.

    Args:
        videos_dir: folder of ``*.mp4`` files.
        prompts_file: one prompt per line for the videos sorted by name (:func:`read_prompts`).
        out_dir: created if needed; gets ``videos/<stem>.json`` and ``aggregate.json``.
        backbones: {kind: backbone} from :func:`~context_forcing_core.eval.backbones.load_backbones`.
        cfg: metric settings.
        fps: frame rate overriding the containers' (None: each file's own).

    """
    from tqdm.auto import tqdm

    cfg = cfg or EvalConfig()
    videos = list_videos(videos_dir)
    prompts = read_prompts(prompts_file, videos)
    out = Path(out_dir)
    (out / "videos").mkdir(parents=True, exist_ok=True)
    results = []
    for path, prompt in tqdm(list(zip(videos, prompts)), desc="videos", unit="video", disable=not cfg.progress):
        result = evaluate_video(VideoFile(path, fps=fps), prompt, backbones, cfg).to_dict()
        write_atomic(out / "videos" / f"{path.stem}.json", json.dumps(result, indent=2))
        results.append(result)
    aggregate = aggregate_results(results)
    aggregate["config"] = {"eval": asdict(cfg), "backbones": {
        kind: {"pooling": b.cfg.pooling, "dtype": b.cfg.dtype, "preprocess": asdict(b.preprocess)}
        for kind, b in backbones.items()}}
    write_atomic(out / "aggregate.json", json.dumps(aggregate, indent=2))
    return aggregate
