"""On-disk cache of encoded prompts for the data-free stages, in shards, and the dataset that reads it back.

Layout of a prompt cache folder::

    prompts.json                      text_dim, text_len, save_dtype, shard_size, count
    prompts.txt                       the cleaned prompts, one a line (line i = item i)
    shards/shard_KKKKK.safetensors    prompts [K * shard_size, (K + 1) * shard_size): text_states (sum L, D) holding each
                                      prompt's true token rows back to back, offsets (n + 1,) int64; metadata: prompts

A shard is written atomically and is current when its stored prompt list equals the expected one, so a re-run skips
finished shards and re-encodes only shards whose prompts changed. Reads slice one prompt out of the shard lazily.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor
from torch.utils.data import Dataset

from context_forcing_core.atomic import write_atomic

PROMPT_MANIFEST = "prompts.json"
PROMPT_LIST = "prompts.txt"
SHARD_DIR = "shards"


@dataclass(kw_only=True, slots=True, frozen=True)
class PromptCacheSpec:
    """What every shard of a prompt cache holds."""

    text_dim: int
    """Width D of the text states (4096 for umT5-XXL)."""
    text_len: int
    """Rows the states are zero-padded to when read (Wan: 512)."""
    save_dtype: str = "bfloat16"
    """torch dtype name the states are stored in."""
    shard_size: int = 1024
    """Prompts per shard file."""

    def __post_init__(self) -> None:
        if self.shard_size < 1 or self.text_dim < 1 or self.text_len < 1:
            raise ValueError("shard_size, text_dim and text_len must be positive")


def shard_path(folder: Path, shard: int) -> Path:
    """File of shard ``shard``."""
    return folder / SHARD_DIR / f"shard_{shard:05d}.safetensors"


def open_prompt_cache(folder: str | Path, spec: PromptCacheSpec, prompts: list[str]) -> Path:
    """Create or reopen a prompt cache for ``prompts``: checks the spec, writes the manifest and prompt list.

    Raises:
        ValueError: The folder holds a prompt cache of a different spec.

    """
    folder = Path(folder)
    (folder / SHARD_DIR).mkdir(parents=True, exist_ok=True)
    manifest = folder / PROMPT_MANIFEST
    data = {**dataclasses.asdict(spec), "count": len(prompts)}
    if manifest.is_file():
        old = json.loads(manifest.read_text())
        diff = {k: (old.get(k), v) for k, v in dataclasses.asdict(spec).items() if old.get(k) != v}
        if diff:
            raise ValueError(f"{folder} holds a prompt cache made with other settings (cached, requested): {diff}; "
                             "use a new folder")
    write_atomic(folder / PROMPT_LIST, "".join(p + "\n" for p in prompts))
    write_atomic(manifest, json.dumps(data, indent=2, sort_keys=True))
    return folder


def shard_is_current(path: Path, prompts: list[str]) -> bool:
    """Whether ``path`` exists and holds exactly ``prompts``."""
    if not path.is_file():
        return False
    try:
        with safe_open(path, "pt") as f:
            return json.loads((f.metadata() or {}).get("prompts", "null")) == prompts
    except Exception:  # a damaged shard is simply re-encoded
        return False


def write_prompt_shard(path: Path, prompts: list[str], states: list[Tensor], dtype: torch.dtype) -> None:
    """Write one shard atomically.

    Args:
        path: Shard file.
        prompts: The shard's prompts.
        states: One (L_i, D) tensor of true token rows per prompt.
        dtype: Storage dtype.

    """
    if len(prompts) != len(states):
        raise ValueError(f"{len(prompts)} prompts but {len(states)} state tensors")
    lengths = torch.tensor([len(s) for s in states], dtype=torch.int64)
    offsets = torch.cat([torch.zeros(1, dtype=torch.int64), lengths.cumsum(0)])  # (n + 1,)
    tensors = {"text_states": torch.cat([s.detach().to("cpu", dtype) for s in states]).contiguous(),  # (sum L, D)
               "offsets": offsets}
    meta = {"prompts": json.dumps(prompts, ensure_ascii=False)}
    write_atomic(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


class EncodedPromptDataset(Dataset):
    """Prompts of a cache folder with their states; item i is ``(prompt, (text_len, D) states)``.

    Args:
        folder: Prompt cache folder written by ``prepare_prompts``.
        dtype: dtype of the returned states.

    Raises:
        FileNotFoundError: No manifest in ``folder``.

    """

    def __init__(self, folder: str | Path, *, dtype: torch.dtype = torch.float32) -> None:
        self.folder = Path(folder)
        if not (self.folder / PROMPT_MANIFEST).is_file():
            raise FileNotFoundError(f"{self.folder} is not a prompt cache (no {PROMPT_MANIFEST})")
        data = json.loads((self.folder / PROMPT_MANIFEST).read_text())
        self.spec = PromptCacheSpec(**{k: data[k] for k in ("text_dim", "text_len", "save_dtype", "shard_size")})
        self.prompts = (self.folder / PROMPT_LIST).read_text(encoding="utf-8").splitlines()
        if len(self.prompts) != data["count"]:
            raise ValueError(f"{self.folder / PROMPT_LIST}: {len(self.prompts)} prompts, manifest says {data['count']}")
        self.dtype = dtype

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, index: int) -> tuple[str, Tensor]:
        """Returns ``(prompt text, (text_len, D) states)`` with rows past the prompt's tokens zero."""
        index = range(len(self.prompts))[index]
        shard, row = divmod(index, self.spec.shard_size)
        path = shard_path(self.folder, shard)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: shard of prompt {index} missing (prepare did not finish?)")
        with safe_open(path, "pt") as f:
            offsets = f.get_tensor("offsets")  # (n + 1,)
            if row + 1 >= len(offsets):
                raise ValueError(f"{path}: key 'offsets' has {len(offsets)} entries, prompt {index} needs {row + 2}")
            start, end = int(offsets[row]), int(offsets[row + 1])
            states = f.get_slice("text_states")[start:end]  # (L, D)
        if states.ndim != 2 or states.shape[1] != self.spec.text_dim or end - start > self.spec.text_len:
            raise ValueError(f"{path}: key 'text_states' rows {start}:{end} have shape {tuple(states.shape)}, "
                             f"expected (<= {self.spec.text_len}, {self.spec.text_dim})")
        padded = torch.zeros(self.spec.text_len, self.spec.text_dim, dtype=self.dtype)  # (text_len, D)
        padded[: len(states)] = states.to(self.dtype)
        return self.prompts[index], padded
