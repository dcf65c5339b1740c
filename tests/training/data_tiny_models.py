"""Helpers of the tests/training/test_data_*.py files: tiny Wan components saved in their real formats, tiny videos.

``save_tiny_wan(root)`` writes a diffusers-style pipeline root (``vae/``, ``text_encoder/``, ``tokenizer/``) with a
randomly initialised ``AutoencoderKLWan`` (z_dim 16, as Wan), a 2-layer ``UMT5EncoderModel`` (d_model 16 instead of
4096) and a word-level tokenizer that appends ``</s>`` like T5's, all through ``save_pretrained``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

WORDS = "a the cat dog runs walks on beach red blue car city at night sunset over ocean slowly".split()
LATENTS_MEAN = [round(-0.8 + 0.1 * i, 3) for i in range(16)]
LATENTS_STD = [round(0.5 + 0.15 * i, 3) for i in range(16)]


def save_tiny_wan(root: Path, seed: int = 0) -> Path:
    """Write ``root/{vae,text_encoder,tokenizer}`` and return ``root``."""
    from diffusers import AutoencoderKLWan
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    vae = AutoencoderKLWan(base_dim=8, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True], latents_mean=LATENTS_MEAN, latents_std=LATENTS_STD)
    vae.save_pretrained(root / "vae")
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                            model_max_length=512).save_pretrained(root / "tokenizer")
    cfg = UMT5Config(vocab_size=len(vocab), d_model=16, d_kv=4, d_ff=32, num_layers=2, num_heads=4,
                     relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    UMT5EncoderModel(cfg).eval().save_pretrained(root / "text_encoder")
    return root


def write_video(path: Path, frames: np.ndarray, fps: float) -> Path:
    """(T, H, W, 3) uint8 -> an H.264 mp4 (lossless yuv444p, so pixel values survive)."""
    import imageio.v2 as iio

    iio.mimwrite(path, list(frames), fps=fps, format="FFMPEG", codec="libx264", macro_block_size=1,
                 pixelformat="yuv444p", output_params=["-crf", "0"])
    return path


def ramp_frames(num: int, height: int = 32, width: int = 32, step: int = 8) -> np.ndarray:
    """(num, H, W, 3) uint8 frames, frame i a uniform grey of value step * i (frame index readable from pixels)."""
    return np.stack([np.full((height, width, 3), step * i, np.uint8) for i in range(num)])


def noise_frames(num: int, height: int = 32, width: int = 32, seed: int = 0) -> np.ndarray:
    """(num, H, W, 3) uint8 smooth random frames (upsampled 4x4 noise, so compression keeps them close)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(num, 4, 4, 3)).astype(np.uint8)
    return small.repeat(height // 4, axis=1).repeat(width // 4, axis=2)
