"""The encoded negative prompt of a prepared data folder: the unconditional branch of classifier-free guidance.

``prepare-data`` writes ``negative.safetensors`` (key ``text_states``: the prompt's (L, D) true token rows; metadata:
the prompt) into every latent or prompt cache it fills, so a training run on that folder guides with the same
text encoder that encoded its prompts. The default negative prompt is the empty string.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from context_forcing_core.atomic import write_atomic

NEGATIVE_FILE = "negative.safetensors"


def negative_is_current(folder: str | Path, prompt: str) -> bool:
    """Whether ``folder`` already holds the encoding of ``prompt``."""
    path = Path(folder) / NEGATIVE_FILE
    if not path.is_file():
        return False
    try:
        with safe_open(path, "pt") as f:
            return (f.metadata() or {}).get("prompt") == prompt
    except Exception:  # a damaged file is simply re-encoded
        return False


def write_negative(folder: str | Path, prompt: str, states: Tensor, dtype: torch.dtype) -> Path:
    """Write the negative prompt's (L, D) true token rows atomically; returns the file."""
    if states.ndim != 2:
        raise ValueError(f"negative prompt states must be (L, D), got {tuple(states.shape)}")
    path = Path(folder) / NEGATIVE_FILE
    tensors = {"text_states": states.detach().to("cpu", dtype).contiguous()}
    write_atomic(path, lambda tmp: save_file(tensors, tmp, metadata={"prompt": prompt}))
    return path


def read_negative(folder: str | Path, *, text_len: int, text_dim: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """(1, text_len, text_dim) negative prompt states, zero-padded like the prompts.

    Raises:
        FileNotFoundError: The folder has no negative prompt (prepared before it was written: run prepare-data again).
        ValueError: The stored states do not fit (text_len, text_dim); the message names file and key.

    """
    path = Path(folder) / NEGATIVE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: run prepare-data on this folder again to encode the negative prompt")
    with safe_open(path, "pt") as f:
        if "text_states" not in f.keys():
            raise ValueError(f"{path}: key 'text_states' missing (has {sorted(f.keys())})")
        states = f.get_tensor("text_states")  # (L, D)
    if states.ndim != 2 or states.shape[1] != text_dim or states.shape[0] > text_len:
        raise ValueError(f"{path}: key 'text_states' has shape {tuple(states.shape)}, expected (<= {text_len}, "
                         f"{text_dim})")
    padded = torch.zeros(1, text_len, text_dim, dtype=dtype)
    padded[0, : len(states)] = states.to(dtype)
    return padded
