"""A tiny deterministic text encoder standing in for umT5: fixed word embeddings plus sinusoidal positions."""

from __future__ import annotations

import math
import re
import zlib

import torch
from torch import Tensor

VOCABULARY: tuple[str, ...] = (
    "a", "across", "an", "and", "are", "around", "at", "back", "band", "bands", "bright", "by", "camera", "circle",
    "circling", "clip", "color", "colorful", "colors", "colour", "colourful", "colours", "dark", "desert", "fast",
    "forest", "forth", "from", "ground", "in", "is", "it", "its", "landscape", "left", "loop", "looping", "loops",
    "mixed", "moves", "moving", "neon", "ocean", "of", "on", "over", "pan", "panning", "panorama", "pans", "pause",
    "paused", "pauses", "pausing", "plain", "quick", "quickly", "rapid", "right", "scene", "shape", "shapes", "shot",
    "slow", "slowly", "smooth", "snow", "some", "steady", "stop", "stops", "stripe", "striped", "stripes", "sunset",
    "that", "the", "this", "through", "to", "toy", "under", "vertical", "very", "video", "view", "with", "world",
)
"""The words with their own table embedding, sorted; row ``i`` of the table belongs to ``VOCABULARY[i]``.

Frozen: the bundled toy student was trained on this table, so adding, removing or reordering a word changes every
embedding it reads. The list is that of the first toy world (its palette, style and motion phrases plus common
words) and includes every word of the scene prompts; any other word gets a hashed embedding.
"""


def tokenize(text: str) -> list[str]:
    """Lowercase words (runs of letters and digits); punctuation and whitespace are dropped."""
    return re.findall(r"[a-z0-9]+", text.lower())


def _sinusoid(num_positions: int, width: int) -> Tensor:
    """(num_positions, width) float32 transformer position code: sin on even, cos on odd channels."""
    pos = torch.arange(num_positions, dtype=torch.float64)[:, None]
    freq = torch.exp(-math.log(10000.0) * torch.arange(0, width, 2, dtype=torch.float64) / width)
    table = torch.zeros(num_positions, width, dtype=torch.float64)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)[:, : width // 2]
    return table.float()


class ToyTextEncoder:
    """Deterministic bag-of-positioned-words encoder with umT5-like padded outputs.

    Every vocabulary word has a fixed N(0, 1) embedding drawn from a seeded ``torch.Generator``; an unknown word gets
    an N(0, 1) embedding seeded by ``zlib.crc32`` of the word (never Python's ``hash``), so the same text gives the
    same tensor in every process. Token ``i`` is ``embedding(word_i) + sinusoid(i)``, so word order matters.

    Args:
        width: Embedding width (4096 like umT5-XXL).
        max_tokens: Output rows; longer texts are truncated.
        seed: Seed of the vocabulary table and mixed into the hashed embeddings.

    """

    def __init__(self, width: int = 4096, max_tokens: int = 16, seed: int = 0) -> None:
        if width < 2 or width % 2:
            raise ValueError(f"width must be a positive even number, got {width}")
        if max_tokens < 1:
            raise ValueError(f"max_tokens must be positive, got {max_tokens}")
        self.width, self.max_tokens, self.seed = width, max_tokens, seed
        self.vocabulary: tuple[str, ...] = VOCABULARY
        self._index = {w: i for i, w in enumerate(self.vocabulary)}
        gen = torch.Generator().manual_seed(seed)
        self._table = torch.randn(len(self.vocabulary), width, generator=gen)  # (V, width)
        self._positions = _sinusoid(max_tokens, width)  # (max_tokens, width)
        self._hashed: dict[str, Tensor] = {}

    def _embed(self, word: str) -> Tensor:
        """(width,) embedding of one word."""
        if word in self._index:
            return self._table[self._index[word]]
        if word not in self._hashed:
            gen = torch.Generator().manual_seed(zlib.crc32(f"{self.seed}:{word}".encode()))
            self._hashed[word] = torch.randn(self.width, generator=gen)
        return self._hashed[word]

    def encode(self, texts: list[str]) -> Tensor:
        """Embed a batch of texts.

        Args:
            texts: B strings.

        Returns:
            (B, max_tokens, width) float32; rows after a text's last token (all rows for an empty text) are zero.

        """
        if isinstance(texts, str):
            raise ValueError("encode takes a list of strings, got a single str")
        out = torch.zeros(len(texts), self.max_tokens, self.width)
        for b, text in enumerate(texts):
            words = tokenize(text)[: self.max_tokens]
            if words:
                out[b, : len(words)] = torch.stack([self._embed(w) for w in words]) + self._positions[: len(words)]
        return out
