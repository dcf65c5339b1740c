"""Latent cache: atomic files + index, resume after a crash, spec checks, and the dataset's shape validation."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from training.data.cache import CacheSpec, ClipCache, LatentClip, LatentClipDataset, clip_key, read_index

SPEC = CacheSpec(latent_shape=(16, 3, 2, 2), text_dim=8, text_len=12, save_dtype="float32",
                 video={"fps": 16.0, "height": 16, "width": 16, "num_frames": 9})


def _fill(folder, n=3, spec=SPEC, **kw):
    cache = ClipCache(folder, spec, **kw)
    torch.manual_seed(0)
    written = {}
    for i in range(n):
        key = clip_key(f"v{i}.mp4", f"caption {i}")
        lat, text = torch.randn(spec.latent_shape), torch.randn(i + 2, spec.text_dim)  # (C, F, h, w), (L, D)
        if cache.owns(key):
            cache.add(key, lat, text, caption=f"caption {i}", source=f"v{i}.mp4")
            written[key] = (lat, text)
    return cache, written


def test_round_trip_pads_text_with_zeros(tmp_path):
    cache, written = _fill(tmp_path)
    assert len(cache) == 3 and not list(tmp_path.rglob("*.tmp"))
    ds = LatentClipDataset(tmp_path)
    assert len(ds) == 3
    for i, item in enumerate(ds):
        lat, text = written[clip_key(f"v{i}.mp4", f"caption {i}")]
        assert torch.equal(item.latents, lat) and item.prompt == f"caption {i}" and item.source == f"v{i}.mp4"
        assert item.text.shape == (12, 8)
        assert torch.equal(item.text[: i + 2], text) and not item.text[i + 2 :].any()
    batch = next(iter(DataLoader(ds, batch_size=2, collate_fn=LatentClip.collate)))
    assert batch["latents"].shape == (2, 16, 3, 2, 2) and batch["text"].shape == (2, 12, 8)
    assert batch["prompt"] == ["caption 0", "caption 1"]


def test_stored_file_holds_true_rows_and_metadata(tmp_path):
    _, written = _fill(tmp_path, n=1)
    key = next(iter(written))
    tensors = load_file(tmp_path / "clips" / f"{key}.safetensors")
    assert tensors["text_states"].shape == (2, 8) and tensors["latents"].dtype == torch.float32
    entry = read_index(tmp_path)[0]
    assert entry == {"key": key, "file": f"clips/{key}.safetensors", "caption": "caption 0", "source": "v0.mp4",
                     "latent_frames": 3, "text_tokens": 2}


def test_bfloat16_storage(tmp_path):
    spec = CacheSpec(latent_shape=(16, 3, 2, 2), text_dim=8, text_len=12)
    _, written = _fill(tmp_path, n=1, spec=spec)
    item = LatentClipDataset(tmp_path)[0]
    lat, _ = next(iter(written.values()))
    assert torch.equal(item.latents, lat.to(torch.bfloat16).float())


def test_reopen_resumes_and_recovers_a_cut_index(tmp_path):
    _, written = _fill(tmp_path)
    index = tmp_path / "index.jsonl"
    lines = index.read_text().splitlines()
    index.write_text(lines[0] + "\n" + lines[1][:10])  # crash: third line never written, second torn
    reopened = ClipCache(tmp_path, SPEC)
    assert len(reopened) == 3 and all(k in reopened for k in written)
    assert len(index.read_text().splitlines()) == 3
    assert {e["key"] for e in read_index(tmp_path)} == set(written)
    recovered = [e for e in read_index(tmp_path) if e["key"] == json.loads(lines[2])["key"]][0]
    assert recovered == json.loads(lines[2])  # rebuilt from the file's metadata


def test_index_forgets_deleted_files(tmp_path):
    _, written = _fill(tmp_path)
    gone = next(iter(written))
    (tmp_path / "clips" / f"{gone}.safetensors").unlink()
    assert gone not in ClipCache(tmp_path, SPEC) and len(LatentClipDataset(tmp_path)) == 2


def test_other_settings_are_refused(tmp_path):
    _fill(tmp_path, n=1)
    other = CacheSpec(latent_shape=(16, 5, 2, 2), text_dim=8, text_len=12, save_dtype="float32", video=SPEC.video)
    with pytest.raises(ValueError, match="latent_shape"):
        ClipCache(tmp_path, other)


def test_add_checks_shapes(tmp_path):
    cache = ClipCache(tmp_path, SPEC)
    with pytest.raises(ValueError, match="bad.mp4"):
        cache.add("0" * 20, torch.zeros(16, 4, 2, 2), torch.zeros(2, 8), caption="c", source="bad.mp4")
    with pytest.raises(ValueError, match="text states"):
        cache.add("0" * 20, torch.zeros(16, 3, 2, 2), torch.zeros(13, 8), caption="c", source="bad.mp4")


def test_dataset_names_file_and_key_on_bad_content(tmp_path):
    _, written = _fill(tmp_path, n=2)
    key = clip_key("v1.mp4", "caption 1")
    path = tmp_path / "clips" / f"{key}.safetensors"
    save_file({"latents": torch.zeros(16, 3, 2, 3), "text_states": torch.zeros(2, 8)}, path)
    ds = LatentClipDataset(tmp_path)
    with pytest.raises(ValueError, match=f"{key}.safetensors: key 'latents' has shape \\(16, 3, 2, 3\\)"):
        ds[1]
    save_file({"latents": torch.zeros(16, 3, 2, 2), "text_states": torch.zeros(2, 9)}, path)
    with pytest.raises(ValueError, match="key 'text_states'"):
        ds[1]
    save_file({"latents": torch.zeros(16, 3, 2, 2)}, path)
    with pytest.raises(ValueError, match="key 'text_states' missing"):
        ds[1]
    assert torch.equal(ds[0].latents, written[clip_key("v0.mp4", "caption 0")][0])
    with pytest.raises(FileNotFoundError):
        LatentClipDataset(tmp_path / "nothing")


def test_shards_partition_the_keys_and_the_dataset_reads_all(tmp_path):
    _, w0 = _fill(tmp_path, n=8, shard=0, num_shards=2)
    _, w1 = _fill(tmp_path, n=8, shard=1, num_shards=2)
    assert w0 and w1 and not set(w0) & set(w1) and len(w0) + len(w1) == 8
    assert sorted(p.name for p in tmp_path.glob("index*.jsonl")) == ["index-000-of-002.jsonl", "index-001-of-002.jsonl"]
    assert len(LatentClipDataset(tmp_path)) == 8
    with pytest.raises(ValueError, match="shard"):
        ClipCache(tmp_path, SPEC, shard=2, num_shards=2)
