"""Helpers of the eval tests: tiny randomly initialised DINOv2 / DINO / CLIP checkpoints and tiny mp4s.

``save_tiny_backbones(root)`` writes ``root/{dinov2,dino,clip}`` through ``save_pretrained`` (safetensors), the layout
the real weights use, with a hand-written byte-level BPE vocab for CLIP's tokenizer (every byte, with and without the
``</w>`` word-end mark, a few merges, and CLIP's two special tokens).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from tests.training.data_tiny_models import write_video  # noqa: F401  (the eval tests write mp4s the same way)

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64}
"""Shared width/depth of the tiny vision towers (image 32 px, patch 8 -> 16 patches)."""
MERGES = ["c a", "ca t</w>", "d o", "do g</w>", "r u", "ru n", "run s</w>"]


def byte_chars() -> list[str]:
    """GPT-2 / CLIP byte-to-unicode table: the 256 characters standing for the bytes."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    out, extra = {}, 0
    for b in range(256):
        if b in keep:
            out[b] = chr(b)
        else:
            out[b] = chr(256 + extra)
            extra += 1
    return [out[b] for b in range(256)]


def write_clip_tokenizer(folder: Path) -> int:
    """Write vocab.json + merges.txt into ``folder``; returns the vocab size."""
    chars = byte_chars()
    tokens = chars + [c + "</w>" for c in chars] + [a + b for a, b in (m.split() for m in MERGES)]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(MERGES) + "\n", encoding="utf-8")
    return len(tokens)


def save_tiny_backbones(root: Path, seed: int = 0, kinds: tuple[str, ...] = ("dinov2", "dino", "clip")) -> Path:
    """Write tiny random checkpoints for ``kinds`` under ``root`` and return ``root``."""
    from transformers import CLIPConfig, CLIPModel, Dinov2Config, Dinov2Model, ViTConfig, ViTModel

    torch.manual_seed(seed)
    if "dinov2" in kinds:
        Dinov2Model(Dinov2Config(**TINY, image_size=32, patch_size=8)).save_pretrained(root / "dinov2")
    if "dino" in kinds:
        ViTModel(ViTConfig(**TINY, image_size=32, patch_size=8), add_pooling_layer=False).save_pretrained(root / "dino")
    if "clip" in kinds:
        vocab = write_clip_tokenizer(root / "clip")
        cfg = CLIPConfig(text_config={**TINY, "vocab_size": vocab, "max_position_embeddings": 77,
                                      "bos_token_id": vocab - 2, "eos_token_id": vocab - 1, "pad_token_id": vocab - 1},
                         vision_config={**TINY, "image_size": 32, "patch_size": 8}, projection_dim=16)
        CLIPModel(cfg).save_pretrained(root / "clip")
    return root


def smooth_frames(num: int, height: int = 32, width: int = 32, seed: int = 0) -> np.ndarray:
    """(num, H, W, 3) uint8 smooth random frames (upsampled 4x4 noise, so compression keeps them close)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(num, 4, 4, 3)).astype(np.uint8)
    return small.repeat(height // 4, axis=1).repeat(width // 4, axis=2)
