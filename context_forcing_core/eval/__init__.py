"""Real-video consistency metrics: first-frame curves (DINOv2, CLIP-F), CLIP-T, VBench subject / background.

See README.md in this folder for the formulas, the weights-dir layout and the command.
"""

from .backbones import (
    BACKBONES,
    HUB_IDS,
    Backbone,
    BackboneConfig,
    ClipBackbone,
    DinoBackbone,
    Dinov2Backbone,
    check_weights,
    load_backbone,
    load_backbones,
)
from .consistency import (
    Summary,
    clip_averaged,
    clip_starts,
    first_frame_curve,
    first_frame_similarity,
    normalize,
    start_end_delta,
    summarize_videos,
    text_alignment_curve,
    text_similarity,
    vbench_consistency,
    vbench_frame_scores,
    window_indices,
)
from .evaluate import (
    DEFAULT_TIMESTAMPS_S,
    EvalConfig,
    VideoResult,
    aggregate_results,
    evaluate_folder,
    evaluate_video,
    extract_features,
    list_videos,
    read_prompts,
    usable_timestamps,
)
from .preprocess import Preprocess, default_preprocess, preprocess
from .video import FrameSource, InMemoryFrames, VideoFile

__all__ = [
    "BACKBONES", "DEFAULT_TIMESTAMPS_S", "HUB_IDS", "Backbone", "BackboneConfig", "ClipBackbone", "DinoBackbone",
    "Dinov2Backbone", "EvalConfig", "FrameSource", "InMemoryFrames", "Preprocess", "Summary", "VideoFile", "VideoResult",
    "aggregate_results", "check_weights", "clip_averaged", "clip_starts", "default_preprocess", "evaluate_folder",
    "evaluate_video", "extract_features", "first_frame_curve", "first_frame_similarity", "list_videos", "load_backbone",
    "load_backbones", "normalize", "preprocess", "read_prompts", "start_end_delta", "summarize_videos",
    "text_alignment_curve", "text_similarity", "usable_timestamps", "vbench_consistency", "vbench_frame_scores",
    "window_indices",
]
