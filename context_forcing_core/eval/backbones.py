"""Feature backbones behind one small interface, loaded from a local weights directory (never downloaded).

Weights-dir layout: one transformers checkpoint folder per backbone kind,

    <weights-dir>/dinov2/  config.json, model.safetensors                 facebook/dinov2-base (ViT-B/14)
    <weights-dir>/dino/    config.json, model.safetensors                 facebook/dino-vitb16 (DINO v1 ViT-B/16)
    <weights-dir>/clip/    config.json, model.safetensors, vocab.json,    openai/clip-vit-base-patch32
                           merges.txt (or tokenizer.json)

(a sharded ``model.safetensors.index.json`` works too). Only safetensors are read, with ``local_files_only=True``.
transformers is imported inside :func:`load_backbone`, so the metrics work without it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from .preprocess import Preprocess, default_preprocess, preprocess

HUB_IDS = {"dinov2": "facebook/dinov2-base", "dino": "facebook/dino-vitb16", "clip": "openai/clip-vit-base-patch32"}
"""Default Hugging Face checkpoint of each backbone kind (also the folder name under the weights dir is the kind)."""
MODEL_TYPES = {"dinov2": "dinov2", "dino": "vit", "clip": "clip"}
"""``model_type`` expected in each folder's config.json (catches swapped folders early)."""
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
"""Either marks a folder as holding weights."""
TOKENIZER_FILES = (("tokenizer.json",), ("vocab.json", "merges.txt"))
"""Either set of files makes a CLIP tokenizer."""
POOLINGS = ("cls", "mean")
"""Image token pooling of DINO / DINOv2: the final-norm CLS token, or the mean of the final-norm patch tokens."""


@dataclass(kw_only=True, slots=True)
class BackboneConfig:
    """How a backbone runs (the model itself comes from its weights folder)."""

    device: str = "cpu"
    """Torch device of the model ("cpu", "cuda", "cuda:1"); features always come back to the CPU."""
    batch_size: int = 32
    """Frames per forward pass (only this many frames are on the device at once)."""
    dtype: str = "float32"
    """Model dtype: float32, float16 or bfloat16 (features are returned as float32)."""
    pooling: str = "cls"
    """DINO / DINOv2 image token, one of :data:`POOLINGS` (CLIP always uses its projected pooled embedding)."""
    preprocess: Preprocess | None = None
    """Pixel preprocessing; None = :func:`~context_forcing_core.eval.preprocess.default_preprocess` of the kind."""
    image_size: int | None = None
    """If set, replaces the resize short side and (where the preprocessing crops) the crop size, in pixels."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.dtype not in ("float32", "float16", "bfloat16"):
            raise ValueError(f"dtype must be float32, float16 or bfloat16, got {self.dtype!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        if self.image_size is not None and self.image_size < 1:
            raise ValueError(f"image_size must be positive, got {self.image_size}")

    def preprocess_for(self, kind: str) -> Preprocess:
        """The preprocessing a backbone of ``kind`` uses under this config."""
        pre = self.preprocess or default_preprocess(kind)
        if self.image_size is None:
            return pre
        return replace(pre, resize=self.image_size, crop=None if pre.crop is None else self.image_size)


class Backbone(ABC):
    """Frames -> L2-normalised image features (and prompts -> text features where the model has a text tower)."""

    kind: ClassVar[str]
    """Backbone kind, a key of :data:`HUB_IDS`."""
    has_text: ClassVar[bool] = False
    """Whether :meth:`embed_text` is available."""

    def __init__(self, model: Any, cfg: BackboneConfig, tokenizer: Any = None) -> None:
        self.model = model.to(device=cfg.device, dtype=getattr(torch, cfg.dtype)).eval()
        self.cfg = cfg
        self.preprocess = cfg.preprocess_for(self.kind)
        self.tokenizer = tokenizer

    @abstractmethod
    def _image_features(self, pixels: Tensor) -> Tensor:
        """(B, 3, h, w) normalised pixels on the device -> (B, D) raw features."""

    def embed_images(self, frames: Tensor) -> Tensor:
        """Image features of frames, ``batch_size`` frames at a time.

        Args:
            frames: (N, 3, H, W) float RGB in [0, 1], on any device.

        Returns:
            (N, D) float32 L2-normalised features on the CPU.

        """
        if frames.ndim != 4 or frames.shape[1] != 3 or frames.shape[0] < 1:
            raise ValueError(f"frames must have shape (N, 3, H, W) with N >= 1, got {tuple(frames.shape)}")
        dtype = getattr(torch, self.cfg.dtype)
        out = []
        with torch.no_grad():
            for chunk in frames.split(self.cfg.batch_size):
                pixels = preprocess(chunk.to(self.cfg.device), self.preprocess).to(dtype)  # (B, 3, h, w)
                out.append(F.normalize(self._image_features(pixels).float(), dim=-1).cpu())  # (B, D)
        return torch.cat(out)

    def embed_text(self, prompts: Sequence[str]) -> Tensor:
        """Text features of prompts: (P,) strings -> (P, D) float32 L2-normalised features on the CPU."""
        raise ValueError(f"the {self.kind} backbone has no text encoder")


class Dinov2Backbone(Backbone):
    """DINOv2 (transformers ``Dinov2Model``): CLS (or mean patch) token of ``last_hidden_state`` after the final norm."""

    kind = "dinov2"

    def _image_features(self, pixels: Tensor) -> Tensor:
        tokens = self.model(pixel_values=pixels).last_hidden_state  # (B, 1 + patches, D), final layernorm applied
        return tokens[:, 0] if self.cfg.pooling == "cls" else tokens[:, 1:].mean(dim=1)


class DinoBackbone(Backbone):
    """DINO v1 (transformers ``ViTModel`` without its pooler): final-norm CLS (or mean patch) token, as VBench."""

    kind = "dino"

    def _image_features(self, pixels: Tensor) -> Tensor:
        # interpolate_pos_encoding: VBench keeps the aspect ratio (no crop); a no-op at the checkpoint's own size
        tokens = self.model(pixel_values=pixels, interpolate_pos_encoding=True).last_hidden_state  # (B, 1 + P, D)
        return tokens[:, 0] if self.cfg.pooling == "cls" else tokens[:, 1:].mean(dim=1)


class ClipBackbone(Backbone):
    """CLIP (transformers ``CLIPModel``): projected image and text embeddings (``get_image/text_features``)."""

    kind = "clip"
    has_text = True

    def _image_features(self, pixels: Tensor) -> Tensor:
        out = self.model.get_image_features(pixel_values=pixels, interpolate_pos_encoding=True)
        return out if isinstance(out, Tensor) else out.pooler_output  # transformers 4 returns the tensor itself

    def embed_text(self, prompts: Sequence[str]) -> Tensor:
        """Text features, prompts truncated to CLIP's context (77 tokens): (P,) -> (P, D) float32 on the CPU."""
        if isinstance(prompts, str) or len(prompts) == 0:
            raise ValueError("prompts must be a non-empty sequence of strings")
        limit = self.model.config.text_config.max_position_embeddings
        tokens = self.tokenizer(list(prompts), padding=True, truncation=True, max_length=limit, return_tensors="pt")
        with torch.no_grad():
            out = self.model.get_text_features(input_ids=tokens["input_ids"].to(self.cfg.device),
                                               attention_mask=tokens["attention_mask"].to(self.cfg.device))
        out = out if isinstance(out, Tensor) else out.pooler_output
        return F.normalize(out.float(), dim=-1).cpu()  # (P, D)


BACKBONES: dict[str, type[Backbone]] = {"dinov2": Dinov2Backbone, "dino": DinoBackbone, "clip": ClipBackbone}
"""Backbone class of each kind."""


def check_weights(weights_dir: str | Path, kind: str) -> Path:
    """The checkpoint folder of ``kind`` under ``weights_dir``, after checking that its files are there.

    Raises:
        FileNotFoundError: the folder or one of its files is missing; the message names the path and the download
            command to run on a machine with internet.

    """
    if kind not in BACKBONES:
        raise ValueError(f"unknown backbone kind {kind!r}; expected one of {', '.join(BACKBONES)}")
    if not Path(weights_dir).is_dir():
        raise FileNotFoundError(f"weights directory not found: {weights_dir} (it should hold {', '.join(BACKBONES)} "
                                "checkpoint folders, see context_forcing_core/eval/README.md)")
    folder = Path(weights_dir) / kind
    missing = [] if (folder / "config.json").is_file() else [str(folder / "config.json")]
    if not any((folder / f).is_file() for f in WEIGHT_FILES):
        missing.append(f"{folder / WEIGHT_FILES[0]} (or {WEIGHT_FILES[1]})")
    if kind == "clip" and not any(all((folder / f).is_file() for f in files) for files in TOKENIZER_FILES):
        missing.append(f"{folder / 'vocab.json'} + {folder / 'merges.txt'} (or {folder / 'tokenizer.json'})")
    if missing:
        raise FileNotFoundError(
            f"{kind} weights incomplete, missing: {'; '.join(missing)}. Nothing is downloaded at evaluation time; on a "
            f"machine with internet run `hf download {HUB_IDS[kind]} --local-dir {folder}` (older huggingface_hub: "
            f"`huggingface-cli download ...`) and copy the folder here")
    return folder


def load_backbone(weights_dir: str | Path, kind: str, cfg: BackboneConfig | None = None) -> Backbone:
    """Load ``<weights_dir>/<kind>`` (a transformers checkpoint folder) offline into a :class:`Backbone`.

    Raises:
        FileNotFoundError: see :func:`check_weights`.
        ValueError: the folder holds another model type, or transformers cannot load it.

    """
    import json

    cfg = cfg or BackboneConfig()
    folder = check_weights(weights_dir, kind)
    try:
        model_type = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (json.JSONDecodeError, AttributeError) as err:
        raise ValueError(f"{folder / 'config.json'} is not a JSON object: {err}") from err
    if model_type != MODEL_TYPES[kind]:
        raise ValueError(f"{folder / 'config.json'} has model_type {model_type!r}, the {kind} backbone needs "
                         f"{MODEL_TYPES[kind]!r} ({HUB_IDS[kind]})")
    from transformers import CLIPModel, CLIPTokenizerFast, Dinov2Model, ViTModel

    offline = {"local_files_only": True, "use_safetensors": True}
    tokenizer = None
    try:
        if kind == "dinov2":
            model = Dinov2Model.from_pretrained(folder, **offline)
        elif kind == "dino":
            model = ViTModel.from_pretrained(folder, add_pooling_layer=False, **offline)
        else:
            model = CLIPModel.from_pretrained(folder, **offline)
            tokenizer = CLIPTokenizerFast.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        raise ValueError(f"cannot load the {kind} backbone from {folder}: {err}") from err
    return BACKBONES[kind](model, cfg, tokenizer)


def load_backbones(weights_dir: str | Path, kinds: Sequence[str], cfg: BackboneConfig | None = None) -> dict[str, Backbone]:
    """Load several backbone kinds; all folders are checked before any model is loaded."""
    for kind in kinds:
        check_weights(weights_dir, kind)
    return {kind: load_backbone(weights_dir, kind, cfg) for kind in kinds}
