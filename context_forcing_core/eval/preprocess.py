"""Frames -> backbone input: short-side resize, optional centre crop, per-channel normalisation.

Frames are ``(N, 3, H, W)`` float RGB in [0, 1]. The defaults per backbone are in :func:`default_preprocess`; none is
claimed to match the Context Forcing paper, which does not state its preprocessing.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""ImageNet RGB mean (DINO, DINOv2)."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""ImageNet RGB standard deviation (DINO, DINOv2)."""
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
"""OpenAI CLIP RGB mean."""
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
"""OpenAI CLIP RGB standard deviation."""
INTERPOLATIONS = ("bilinear", "bicubic")
"""Resize filters accepted by :class:`Preprocess`."""


@dataclass(kw_only=True, slots=True, frozen=True)
class Preprocess:
    """How frames become a backbone's pixel input."""

    resize: int | None = 224
    """Short side after resizing in pixels, aspect ratio kept (long side rounded); None keeps the frame size."""
    crop: int | None = 224
    """Side of the square centre crop in pixels, taken after resizing; None keeps the whole (resized) frame."""
    mean: tuple[float, float, float] = IMAGENET_MEAN
    """Per-channel RGB mean subtracted from [0, 1] pixels."""
    std: tuple[float, float, float] = IMAGENET_STD
    """Per-channel RGB standard deviation the centred pixels are divided by."""
    interpolation: str = "bicubic"
    """Resize filter, one of :data:`INTERPOLATIONS` (results are clamped to [0, 1], bicubic overshoots)."""
    antialias: bool = True
    """Low-pass before downsampling (torch ``antialias=True``); VBench's own transforms may differ (unverified)."""

    def __post_init__(self) -> None:
        if self.resize is not None and self.resize < 1 or self.crop is not None and self.crop < 1:
            raise ValueError(f"resize and crop must be positive or None, got {self.resize}, {self.crop}")
        if self.resize is not None and self.crop is not None and self.crop > self.resize:
            raise ValueError(f"crop {self.crop} is larger than the resized short side {self.resize}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError(f"mean and std need 3 values, std positive, got {self.mean}, {self.std}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {self.interpolation!r}")


def default_preprocess(kind: str) -> Preprocess:
    """The default preprocessing of a backbone kind.

    - ``dinov2``: short side 224, centre crop 224, bicubic, ImageNet mean/std (docs/evaluation.md section 3 suggestion).
    - ``dino``: short side 224, no crop (aspect kept), bilinear, ImageNet mean/std (VBench subject consistency).
    - ``clip``: short side 224, centre crop 224, bicubic, CLIP mean/std (VBench background consistency, CLIP-F/T).
    """
    if kind == "dinov2":
        return Preprocess()
    if kind == "dino":
        return Preprocess(crop=None, interpolation="bilinear")
    if kind == "clip":
        return Preprocess(mean=CLIP_MEAN, std=CLIP_STD)
    raise ValueError(f"unknown backbone kind {kind!r}; expected dinov2, dino or clip")


def resized_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """(height, width) scaled so that the short side is ``short_side`` (the long side rounded, at least 1)."""
    scale = short_side / min(height, width)
    if height <= width:
        return short_side, max(1, round(width * scale))
    return max(1, round(height * scale)), short_side


def preprocess(frames: Tensor, cfg: Preprocess) -> Tensor:
    """Resize, crop and normalise a batch of frames.

    Args:
        frames: (N, 3, H, W) float RGB in [0, 1].
        cfg: the preprocessing.

    Returns:
        (N, 3, h, w) float32 normalised pixels (h = w = ``cfg.crop`` when cropping).

    """
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"frames must have shape (N, 3, H, W), got {tuple(frames.shape)}")
    x = frames.float()
    if cfg.resize is not None:
        size = resized_size(x.shape[-2], x.shape[-1], cfg.resize)
        if size != tuple(x.shape[-2:]):
            x = F.interpolate(x, size=size, mode=cfg.interpolation, align_corners=False, antialias=cfg.antialias)
            x = x.clamp(0.0, 1.0)
    if cfg.crop is not None:
        height, width = x.shape[-2:]
        if cfg.crop > min(height, width):
            raise ValueError(f"crop {cfg.crop} is larger than the frame ({height}x{width} after resizing)")
        top, left = round((height - cfg.crop) / 2), round((width - cfg.crop) / 2)  # torchvision CenterCrop rule
        x = x[..., top : top + cfg.crop, left : left + cfg.crop]
    mean = torch.tensor(cfg.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(cfg.std, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std
