"""On-disk latent cache of encoded clips, resumable, and the dataset that reads it back.

Layout of a cache folder::

    cache.json                    what every clip holds (latent shape, text width / rows, video settings)
    index.jsonl                   one line per clip: key, file, caption, source, latent_frames, text_tokens
    clips/<key>.safetensors       latents (C, F, h, w) and text_states (L, D): the prompt's L true token rows

Each clip file is written atomically (``context_forcing_core.atomic``), then its index line is
appended, so an interrupted run leaves only whole files; reopening reconciles the index with the files on disk. With
``num_shards`` > 1 each process owns the keys ``int(key, 16) % num_shards == shard`` and writes its own
``index-SSS-of-NNN.jsonl``; the dataset reads every index file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor
from torch.utils.data import Dataset

from context_forcing_core.atomic import write_atomic

MANIFEST = "cache.json"
CLIP_DIR = "clips"
FORMAT = "context-forcing-latent-clip-v1"


def clip_key(name: str, caption: str) -> str:
    """Stable 20-hex-digit key of a (video path as written, caption) pair."""
    return hashlib.sha1(f"{name}\n{caption}".encode()).hexdigest()[:20]


@dataclass(kw_only=True, slots=True, frozen=True)
class CacheSpec:
    """What every clip of a cache holds; a cache only accepts clips of one spec."""

    latent_shape: tuple[int, int, int, int]
    """(C, F, h, w) of every clip's latents (Wan 480p, 81 frames: (16, 21, 60, 104))."""
    text_dim: int
    """Width D of the text states (4096 for umT5-XXL)."""
    text_len: int
    """Rows the text states are zero-padded to when read (Wan: 512)."""
    save_dtype: str = "bfloat16"
    """torch dtype name the tensors are stored in."""
    video: dict[str, float] = dataclasses.field(default_factory=dict)
    """The video settings (fps, size, frames) the clips were decoded with."""

    def to_json(self) -> str:
        """The manifest text."""
        return json.dumps({"format": FORMAT, **dataclasses.asdict(self)}, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CacheSpec:
        """Parse a manifest written by :meth:`to_json`."""
        data = json.loads(text)
        data.pop("format", None)
        return cls(**{**data, "latent_shape": tuple(data["latent_shape"])})


def _index_name(shard: int, num_shards: int) -> str:
    return "index.jsonl" if num_shards == 1 else f"index-{shard:03d}-of-{num_shards:03d}.jsonl"


def _read_lines(path: Path) -> list[dict]:
    """Index entries of one file; a line that does not parse (a torn write) is dropped."""
    out = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and "key" in entry:
                out.append(entry)
    return out


def read_index(folder: str | Path) -> list[dict]:
    """Every clip of a cache folder, in index-file then line order, each key once."""
    entries, seen = [], set()
    for path in sorted(Path(folder).glob("index*.jsonl")):
        for entry in _read_lines(path):
            if entry["key"] not in seen:
                seen.add(entry["key"])
                entries.append(entry)
    return entries


class ClipCache:
    """Writer side of a cache folder (one per process).

    Args:
        folder: Cache folder (created if missing).
        spec: What the clips hold; must equal the manifest of an existing cache.
        shard: This process's shard in ``[0, num_shards)``.
        num_shards: Processes sharing the folder.

    Raises:
        ValueError: The folder holds a cache of a different spec, or the shard is out of range.

    """

    def __init__(self, folder: str | Path, spec: CacheSpec, *, shard: int = 0, num_shards: int = 1) -> None:
        if num_shards < 1 or not 0 <= shard < num_shards:
            raise ValueError(f"shard must be in [0, {num_shards}), got {shard}")
        self.folder, self.spec, self.shard, self.num_shards = Path(folder), spec, shard, num_shards
        (self.folder / CLIP_DIR).mkdir(parents=True, exist_ok=True)
        manifest = self.folder / MANIFEST
        if manifest.is_file():
            old = CacheSpec.from_json(manifest.read_text())
            if old != spec:
                diff = {f.name: (getattr(old, f.name), getattr(spec, f.name)) for f in dataclasses.fields(spec)
                        if getattr(old, f.name) != getattr(spec, f.name)}
                raise ValueError(f"{self.folder} holds a cache made with other settings (cached, requested): {diff}; "
                                 "use a new folder")
        else:
            write_atomic(manifest, spec.to_json())
        self.index_path = self.folder / _index_name(shard, num_shards)
        self._entries = self._reconcile()

    def owns(self, key: str) -> bool:
        """Whether ``key`` belongs to this process's shard."""
        return int(key, 16) % self.num_shards == self.shard

    def _reconcile(self) -> dict[str, dict]:
        """Index entries whose file exists, plus files written just before a crash cut their index line."""
        entries = {e["key"]: e for e in _read_lines(self.index_path)
                   if (self.folder / e.get("file", "")).is_file() and self.owns(e["key"])}
        for path in sorted((self.folder / CLIP_DIR).glob("*.safetensors")):
            if path.stem not in entries and self.owns(path.stem):
                with safe_open(path, "pt") as f:
                    meta = f.metadata() or {}
                    text_tokens = f.get_slice("text_states").get_shape()[0]
                entries[path.stem] = self._entry(path.stem, meta.get("caption", ""), meta.get("source", ""),
                                                 text_tokens)
        lines = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries.values())
        write_atomic(self.index_path, lines)
        return entries

    def _entry(self, key: str, caption: str, source: str, text_tokens: int) -> dict:
        return {"key": key, "file": f"{CLIP_DIR}/{key}.safetensors", "caption": caption, "source": source,
                "latent_frames": self.spec.latent_shape[1], "text_tokens": int(text_tokens)}

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, key: str, latents: Tensor, text_states: Tensor, *, caption: str, source: str) -> Path:
        """Write one clip atomically and append its index line.

        Args:
            key: :func:`clip_key` of the clip.
            latents: (C, F, h, w) normalised latents.
            text_states: (L, D) the prompt's true token rows (no padding).
            caption: Caption text (stored in the file's metadata and the index).
            source: Where the video came from (same).

        """
        if tuple(latents.shape) != self.spec.latent_shape:
            raise ValueError(f"latents of {source} have shape {tuple(latents.shape)}, cache expects "
                             f"{self.spec.latent_shape}")
        if text_states.ndim != 2 or text_states.shape[1] != self.spec.text_dim or len(text_states) > self.spec.text_len:
            raise ValueError(f"text states of {source} have shape {tuple(text_states.shape)}, cache expects "
                             f"(<= {self.spec.text_len}, {self.spec.text_dim})")
        dtype = getattr(torch, self.spec.save_dtype)
        tensors = {"latents": latents.detach().to("cpu", dtype).contiguous(),
                   "text_states": text_states.detach().to("cpu", dtype).contiguous()}
        meta = {"format": FORMAT, "key": key, "caption": caption, "source": source}
        path = self.folder / CLIP_DIR / f"{key}.safetensors"
        write_atomic(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
        entry = self._entry(key, caption, source, len(text_states))
        with self.index_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._entries[key] = entry
        return path


@dataclass(kw_only=True, slots=True, frozen=True)
class LatentClip:
    """One cached clip."""

    latents: Tensor
    """(C, F, h, w) normalised latents."""
    text: Tensor
    """(text_len, D) text states, rows past the prompt's tokens zero."""
    prompt: str
    """The caption."""
    source: str
    """The source video."""

    @staticmethod
    def collate(clips: list[LatentClip]) -> dict[str, Any]:
        """Batch for a ``DataLoader`` (``collate_fn=LatentClip.collate``).

        Returns:
            Dict with ``latents`` (B, C, F, h, w), ``text`` (B, text_len, D) and ``prompt`` / ``source`` lists.

        """
        return {"latents": torch.stack([c.latents for c in clips]), "text": torch.stack([c.text for c in clips]),
                "prompt": [c.prompt for c in clips], "source": [c.source for c in clips]}


class LatentClipDataset(Dataset):
    """Clips of a cache folder written by :class:`ClipCache` (all shards), checked against its manifest on read.

    Args:
        folder: Cache folder.
        dtype: dtype of the returned tensors.

    Raises:
        FileNotFoundError: No manifest in ``folder``.

    """

    def __init__(self, folder: str | Path, *, dtype: torch.dtype = torch.float32) -> None:
        self.folder = Path(folder)
        if not (self.folder / MANIFEST).is_file():
            raise FileNotFoundError(f"{self.folder} is not a latent cache (no {MANIFEST})")
        self.spec = CacheSpec.from_json((self.folder / MANIFEST).read_text())
        self.entries, self.dtype = read_index(self.folder), dtype

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> LatentClip:
        entry = self.entries[index]
        path = self.folder / entry["file"]
        tensors = load_file(path)
        for name in ("latents", "text_states"):
            if name not in tensors:
                raise ValueError(f"{path}: key {name!r} missing (has {sorted(tensors)})")
        latents, text = tensors["latents"], tensors["text_states"]  # (C, F, h, w), (L, D)
        if tuple(latents.shape) != self.spec.latent_shape:
            raise ValueError(f"{path}: key 'latents' has shape {tuple(latents.shape)}, expected "
                             f"{self.spec.latent_shape}")
        if text.ndim != 2 or text.shape[1] != self.spec.text_dim or text.shape[0] > self.spec.text_len:
            raise ValueError(f"{path}: key 'text_states' has shape {tuple(text.shape)}, expected "
                             f"(<= {self.spec.text_len}, {self.spec.text_dim})")
        padded = text.new_zeros(self.spec.text_len, self.spec.text_dim)  # (text_len, D)
        padded[: len(text)] = text
        return LatentClip(latents=latents.to(self.dtype), text=padded.to(self.dtype), prompt=entry["caption"],
                          source=entry["source"])
