"""Prompt-only data: reading VidProM-style files, lazy encoding with a cache, and the sharded prompt cache."""

from __future__ import annotations

import json

import pytest
import torch

from training.data.prompt_cache import (
    EncodedPromptDataset,
    PromptCacheSpec,
    open_prompt_cache,
    shard_is_current,
    shard_path,
    write_prompt_shard,
)
from training.data.prompts import PromptDataset, clean_prompt, read_prompts


class CountingEncoder:
    """texts -> (B, 6, 4) states: row r of prompt p holds len(p) + r for r < number of words, zero after."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> torch.Tensor:
        self.calls.append(list(texts))
        out = torch.zeros(len(texts), 6, 4)
        for i, t in enumerate(texts):
            n = min(len(t.split()), 6)
            out[i, :n] = (len(t) + torch.arange(n, dtype=torch.float32))[:, None]
        return out


def test_clean_prompt_matches_wans_whitespace_and_html_cleaning():
    assert clean_prompt("  a\tcat \n\n runs &amp;amp; jumps ") == "a cat runs & jumps"
    assert clean_prompt(" \t ") == ""


def test_text_file_drops_blanks_and_exact_duplicates(tmp_path):
    path = tmp_path / "vidprom.txt"
    path.write_text("a cat runs\n\n   \na dog walks\na  cat runs  \nA cat runs\na dog walks\n\tthe ocean at night\n")
    found = read_prompts(path)
    assert found.prompts == ["a cat runs", "a dog walks", "A cat runs", "the ocean at night"]
    assert (found.blank, found.duplicate) == (2, 2)  # case differs: not an exact duplicate


def test_csv_and_jsonl_prompt_columns(tmp_path):
    csv_path = tmp_path / "p.csv"
    csv_path.write_text('id,caption\n1,"a cat, running"\n2,\n3,a cat  running\n')
    assert read_prompts(csv_path).prompts == ["a cat, running", "a cat running"]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text("\n".join([json.dumps({"prompt": "x y"}), json.dumps({"text": "z"}), json.dumps({"other": 1}),
                                json.dumps("bare string"), ""]) + "\n")
    found = read_prompts(jsonl)
    assert found.prompts == ["x y", "z", "bare string"] and found.blank == 2
    bad = tmp_path / "bad.csv"
    bad.write_text("id,words\n1,x\n")
    with pytest.raises(ValueError, match="prompt"):
        read_prompts(bad)
    with pytest.raises(FileNotFoundError):
        read_prompts(tmp_path / "none.txt")


def test_prompt_dataset_encodes_lazily_once_per_index():
    enc = CountingEncoder()
    ds = PromptDataset(["a cat", "a dog runs fast"], enc)
    assert enc.calls == [] and len(ds) == 2
    text, states = ds[1]
    assert text == "a dog runs fast" and torch.equal(states, enc(["a dog runs fast"])[0])
    ds[1], ds[-1], ds[0]
    assert enc.calls == [["a dog runs fast"], ["a dog runs fast"], ["a cat"]]  # 2nd entry is the check above
    with pytest.raises(IndexError):
        ds[2]


def test_prompt_dataset_evicts_least_recently_used():
    enc = CountingEncoder()
    ds = PromptDataset(["a", "b", "c"], enc, max_cached=2)
    for i in (0, 1, 0, 2, 0, 1):  # 1 is evicted when 2 arrives (0 was used more recently)
        ds[i]
    assert [c[0] for c in enc.calls] == ["a", "b", "c", "b"]


def test_sharded_prompt_cache_round_trip(tmp_path):
    prompts = ["a cat", "a dog runs", "the red car", "ocean"]
    spec = PromptCacheSpec(text_dim=4, text_len=6, save_dtype="float32", shard_size=3)
    folder = open_prompt_cache(tmp_path, spec, prompts)
    enc = CountingEncoder()
    full = enc(prompts)  # (4, 6, 4)
    lengths = [len(p.split()) for p in prompts]
    for k, chunk in enumerate((prompts[:3], prompts[3:])):
        rows = [full[prompts.index(p), : lengths[prompts.index(p)]] for p in chunk]
        write_prompt_shard(shard_path(folder, k), chunk, rows, torch.float32)
        assert shard_is_current(shard_path(folder, k), chunk)
    assert not shard_is_current(shard_path(folder, 0), prompts[1:4])
    ds = EncodedPromptDataset(tmp_path)
    assert len(ds) == 4
    for i, p in enumerate(prompts):
        text, states = ds[i]
        assert text == p and torch.equal(states, full[i])
    with pytest.raises(ValueError, match="shard_size"):
        open_prompt_cache(tmp_path, PromptCacheSpec(text_dim=4, text_len=6, save_dtype="float32", shard_size=2), prompts)
