"""Prompt-only data for the data-free stages: VidProM-style text files (one prompt a line) or CSV / JSONL tables.

Prompts are cleaned as Wan cleans them before tokenizing (HTML entities unescaped, whitespace collapsed), blanks and
exact duplicates are dropped and counted; :class:`PromptDataset` encodes lazily and keeps recent encodings.
"""

from __future__ import annotations

import csv
import html
import json
import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor
from torch.utils.data import Dataset

PROMPT_KEYS = ("prompt", "caption", "text")
"""Accepted prompt column / key names of CSV and JSONL files, in order of preference."""


def clean_prompt(text: str) -> str:
    """Wan's ``prompt_clean`` without ftfy: unescape HTML entities twice, collapse whitespace, strip."""
    return re.sub(r"\s+", " ", html.unescape(html.unescape(text))).strip()


@dataclass(kw_only=True, slots=True, frozen=True)
class PromptFile:
    """The prompts of one file after cleaning."""

    prompts: list[str]
    """Distinct non-blank prompts in file order (first occurrence kept)."""
    blank: int
    """Blank lines / rows dropped (including rows without a prompt field)."""
    duplicate: int
    """Exact duplicates (after cleaning) dropped."""


def _raw_prompts(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8-sig")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        fields = {f.strip().lower(): f for f in reader.fieldnames or []}
        key = next((fields[k] for k in PROMPT_KEYS if k in fields), None)
        if key is None:
            raise ValueError(f"{path}: CSV needs a {'/'.join(PROMPT_KEYS)} column, found {list(fields)}")
        return [row.get(key) or "" for row in reader]
    if suffix == ".jsonl":
        out = []
        for i, line in enumerate(text.splitlines()):
            if not line.strip():
                out.append("")
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{i + 1}: not valid JSON ({err})") from err
            value = next((row[k] for k in PROMPT_KEYS if k in row), "") if isinstance(row, dict) else row
            out.append(value if isinstance(value, str) else "")
        return out
    return text.splitlines()


def read_prompts(path: str | Path) -> PromptFile:
    """Read a prompt file: ``.csv`` / ``.jsonl`` with a ``prompt`` (or ``caption`` / ``text``) field, else plain text.

    Raises:
        FileNotFoundError: The file does not exist.
        ValueError: A CSV without a prompt column, or a JSONL line that is not JSON (the whole file is suspect).

    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file not found: {path}")
    seen: set[str] = set()
    prompts, blank, duplicate = [], 0, 0
    for raw in _raw_prompts(path):
        text = clean_prompt(raw)
        if not text:
            blank += 1
        elif text in seen:
            duplicate += 1
        else:
            seen.add(text)
            prompts.append(text)
    return PromptFile(prompts=prompts, blank=blank, duplicate=duplicate)


class PromptDataset(Dataset):
    """Prompts encoded on first use; item i is ``(prompt, (max_tokens, D) states)`` like the toy prompt dataset.

    Args:
        prompts: Prompt texts.
        encoder: Callable ``list[str] -> (B, max_tokens, D)`` states, e.g. a ``UMT5TextEncoder``.
        max_cached: Most recent encodings kept in memory (least recently used evicted); 0 keeps none.

    """

    def __init__(self, prompts: list[str], encoder: Callable[[list[str]], Tensor], *, max_cached: int = 4096) -> None:
        if max_cached < 0:
            raise ValueError(f"max_cached must be >= 0, got {max_cached}")
        self.prompts, self.encoder, self.max_cached = list(prompts), encoder, max_cached
        self._cache: OrderedDict[int, Tensor] = OrderedDict()

    def __len__(self) -> int:
        return len(self.prompts)

    def __getitem__(self, index: int) -> tuple[str, Tensor]:
        """Returns ``(prompt text, (max_tokens, D) states)`` (the cached tensor: do not modify it in place)."""
        index = range(len(self.prompts))[index]  # bounds check and negative indices
        if index in self._cache:
            self._cache.move_to_end(index)
            return self.prompts[index], self._cache[index]
        states = self.encoder([self.prompts[index]])[0].detach().cpu()  # (max_tokens, D)
        if self.max_cached:
            self._cache[index] = states
            if len(self._cache) > self.max_cached:
                self._cache.popitem(last=False)
        return self.prompts[index], states
