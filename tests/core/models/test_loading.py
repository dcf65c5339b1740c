"""Checkpoint loading: every key layout round-trips exactly; bad files fail early with a useful message."""

from __future__ import annotations

import collections
import dataclasses
import json
import struct
import time
import zipfile
from pathlib import Path

import pytest
import torch
from conftest import random_model
from safetensors.torch import save_file

from context_forcing_core.models.config import WanConfig, micro, tiny
from context_forcing_core.models.keys import (
    infer_config,
    select_state_dict,
    to_diffusers_keys,
    to_official_keys,
)
from context_forcing_core.models.loading import (
    CONFIG_METADATA_KEY,
    _inspect_by_stat,
    inspect_checkpoint,
    inspect_checkpoint_cached,
    load_model,
    save_model,
)
from context_forcing_core.models.wan import WanModel

# Formats without stored metadata cannot know text_len, so their originals use the default (Wan's 512).
MICRO_512 = dataclasses.replace(micro(), text_len=512)
TINY_512 = dataclasses.replace(tiny(), text_len=512)


def sd_of(model: WanModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def forward(model: WanModel) -> torch.Tensor:
    cfg = model.config
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(1, cfg.in_channels, 3, 4, 4, generator=g)
    text = torch.randn(1, 3, cfg.text_dim, generator=g)
    with torch.no_grad():
        return model(latents, torch.tensor([500.0]), text)


def assert_same(loaded: WanModel, original: WanModel) -> None:
    assert loaded.config == original.config
    assert not loaded.training
    got, want = loaded.state_dict(), original.state_dict()
    assert list(got) == list(want)
    for key, value in want.items():
        assert got[key].dtype == value.dtype and got[key].device.type == "cpu", key
        assert torch.equal(got[key], value), key
    assert torch.equal(forward(loaded), forward(original))


def fsdp_key(key: str) -> str:
    """Self-Forcing EMA keys: FSDP wraps the DiT and each block."""
    if key.startswith("blocks."):
        i, rest = key.split(".", 2)[1:]
        key = f"blocks.{i}._fsdp_wrapped_module.{rest}"
    return "model._fsdp_wrapped_module." + key


# ---------------------------------------------------------------- round trips


def test_own_safetensors_with_metadata(tmp_path: Path) -> None:
    model = random_model(micro())
    path = tmp_path / "student.safetensors"
    save_model(model, path, metadata={"step": "12"})
    assert [p.name for p in tmp_path.iterdir()] == ["student.safetensors"]  # no temp file left behind
    assert_same(load_model(path), model)  # micro (dim 32) needs the stored config for num_heads and text_len
    save_model(random_model(micro(), seed=5), path)  # overwrite in place
    assert torch.equal(load_model(path).head.head.weight, random_model(micro(), seed=5).head.head.weight)


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
def test_official_and_comfyui_safetensors_without_metadata(tmp_path: Path, prefix: str) -> None:
    model = random_model(TINY_512)
    path = tmp_path / "wan.safetensors"
    save_file({prefix + k: v for k, v in sd_of(model).items()}, str(path))
    assert_same(load_model(path), model)  # heads = 256 // 128


def test_diffusers_folder(tmp_path: Path) -> None:
    model = random_model(MICRO_512)
    sd = to_diffusers_keys(sd_of(model))
    assert {"condition_embedder.time_proj.weight", "scale_shift_table", "proj_out.weight", "blocks.0.norm2.weight",
            "blocks.1.attn1.to_out.0.weight", "blocks.0.attn2.norm_k.weight", "blocks.0.ffn.net.0.proj.weight",
            "blocks.0.ffn.net.2.bias", "blocks.0.scale_shift_table",
            "condition_embedder.text_embedder.linear_2.bias"} <= set(sd)
    save_file(sd, str(tmp_path / "diffusion_pytorch_model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(
        {"_class_name": "WanTransformer3DModel", "num_attention_heads": 2, "attention_head_dim": 16, "in_channels": 4,
         "out_channels": 4, "text_dim": 8, "freq_dim": 16, "ffn_dim": 64, "num_layers": 2, "patch_size": [1, 2, 2],
         "eps": 1e-6, "image_dim": None, "added_kv_proj_dim": None}))
    assert_same(load_model(tmp_path), model)


def test_official_wan_folder(tmp_path: Path) -> None:
    """Wan-AI/Wan2.1-T2V-1.3B layout: official keys plus the official config.json (which names heads and text_len)."""
    model = random_model(micro())
    save_file(sd_of(model), str(tmp_path / "diffusion_pytorch_model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(
        {"_class_name": "WanModel", "model_type": "t2v", "dim": 32, "num_heads": 2, "in_dim": 4, "out_dim": 4,
         "ffn_dim": 64, "freq_dim": 16, "num_layers": 2, "text_len": 4, "eps": 1e-6}))
    assert_same(load_model(tmp_path), model)


def test_sharded_diffusers_pipeline_folder(tmp_path: Path) -> None:
    model = random_model(MICRO_512)
    folder = tmp_path / "transformer"
    folder.mkdir()
    (tmp_path / "model_index.json").write_text("{}")
    sd = to_diffusers_keys(sd_of(model))
    keys = list(sd)
    shards = {"diffusion_pytorch_model-00001-of-00002.safetensors": keys[::2],
              "diffusion_pytorch_model-00002-of-00002.safetensors": keys[1::2]}
    for name, part in shards.items():
        save_file({k: sd[k] for k in part}, str(folder / name))
    weight_map = {k: name for name, part in shards.items() for k in part}
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": 0}, "weight_map": weight_map}))
    (folder / "config.json").write_text(json.dumps({"num_attention_heads": 2}))
    assert_same(load_model(tmp_path), model)


def test_self_forcing_training_dict_and_use_ema(tmp_path: Path) -> None:
    gen, ema = random_model(TINY_512, seed=1), random_model(TINY_512, seed=2)
    path = tmp_path / "model.pt"
    torch.save({"generator": {"model." + k: v for k, v in sd_of(gen).items()},
                "generator_ema": {fsdp_key(k): v for k, v in sd_of(ema).items()},
                "critic": {"model.patch_embedding.weight": torch.zeros(3)}, "step": 100}, path)
    assert_same(load_model(path), ema)  # EMA by default when present; config inferred (heads = 256 // 128)
    assert_same(load_model(path, use_ema=True), ema)
    assert_same(load_model(path, use_ema=False), gen)


def test_longlive_ema_only_raw_pth_and_in_memory(tmp_path: Path) -> None:
    model = random_model(micro(), seed=3)
    ll = tmp_path / "longlive_base.pt"
    torch.save({"generator_ema": {"model." + k: v for k, v in sd_of(model).items()}}, ll)
    assert_same(load_model(ll, config=micro()), model)
    with pytest.raises(ValueError, match="generator"):
        load_model(ll, config=micro(), use_ema=False)
    raw = tmp_path / "raw.pth"
    torch.save(sd_of(model), raw)
    assert_same(load_model(raw, config=micro()), model)
    sd = sd_of(model)
    loaded = load_model({"model": sd}, config=micro())
    assert_same(loaded, model)
    assert loaded.head.head.weight.data_ptr() != sd["head.head.weight"].data_ptr()  # caller's tensors not aliased
    folder = tmp_path / "one"
    folder.mkdir()
    torch.save(sd_of(model), folder / "weights.ckpt")
    assert_same(load_model(folder, config=micro()), model)


def test_dtype(tmp_path: Path) -> None:
    model = random_model(micro()).to(torch.bfloat16)
    path = tmp_path / "bf16.safetensors"
    save_model(model, path)
    assert_same(load_model(path), model)
    as_fp32 = load_model(path, dtype=torch.float32)
    assert as_fp32.dtype == torch.float32
    assert all(torch.equal(as_fp32.state_dict()[k], v.float()) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="floating"):
        load_model(path, dtype=torch.int8)


# ---------------------------------------------------------------- errors


def _write(path: Path, sd: dict[str, torch.Tensor], cfg: WanConfig | None = None) -> Path:
    save_file(sd, str(path), metadata={CONFIG_METADATA_KEY: (cfg or micro()).to_json()})
    return path


def test_missing_unexpected_and_misshaped_keys(tmp_path: Path) -> None:
    sd = sd_of(random_model(micro()))
    missing = {k: v for k, v in sd.items() if k not in ("blocks.1.ffn.2.bias", "head.modulation")}
    with pytest.raises(ValueError, match=r"missing.safetensors.*missing key 'blocks\.1\.ffn\.2\.bias' \(and 1 other"):
        load_model(_write(tmp_path / "missing.safetensors", missing))
    extra = {**sd, "blocks.0.extra.weight": torch.zeros(2)}
    with pytest.raises(ValueError, match=r"extra.safetensors.*unexpected key 'blocks\.0\.extra\.weight'"):
        load_model(_write(tmp_path / "extra.safetensors", extra))
    wrong = {**sd, "blocks.1.ffn.0.weight": torch.zeros(65, 32)}
    with pytest.raises(ValueError, match=r"wrong.safetensors.*'blocks\.1\.ffn\.0\.weight'.*\(64, 32\).*\(65, 32\)"):
        load_model(_write(tmp_path / "wrong.safetensors", wrong))
    with pytest.raises(ValueError, match=r"state dict.*expected \(64, 32\), found \(65, 32\)"):
        load_model(wrong, config=micro())
    with pytest.raises(ValueError, match="config says dim=64"):  # metadata contradicting the shapes
        load_model(_write(tmp_path / "lying.safetensors", sd, dataclasses.replace(micro(), dim=64)))


def test_corrupt_files(tmp_path: Path) -> None:
    good = tmp_path / "good.safetensors"
    save_model(random_model(micro()), good)
    data = good.read_bytes()
    half = tmp_path / "half.safetensors"
    half.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="half.safetensors"):
        load_model(half)
    pt = tmp_path / "good.pt"
    torch.save(sd_of(random_model(micro())), pt)
    half_pt = tmp_path / "half.pt"
    half_pt.write_bytes(pt.read_bytes()[: pt.stat().st_size // 2])
    with pytest.raises(ValueError, match="half.pt"):
        load_model(half_pt, config=micro())
    with pytest.raises(FileNotFoundError, match="nowhere.safetensors"):
        load_model(tmp_path / "nowhere.safetensors")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="unsupported"):
        load_model(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="exactly one"):
        load_model(tmp_path)  # several weight files


class SneakyDict(collections.OrderedDict):
    """Any class outside torch's weights_only allowlist."""


SIDE_EFFECTS: list[str] = []


def _side_effect() -> SneakyDict:
    SIDE_EFFECTS.append("ran")
    return SneakyDict()


class Payload:
    """Unpickling this would call ``_side_effect``."""

    def __reduce__(self) -> tuple:
        return _side_effect, ()


def test_pickles_only_load_with_weights_only(tmp_path: Path) -> None:
    sd = sd_of(random_model(micro()))
    sneaky = tmp_path / "sneaky.pt"
    torch.save({"generator": SneakyDict(sd)}, sneaky)
    with pytest.raises(ValueError, match="weights_only"):
        load_model(sneaky, config=micro())
    payload = tmp_path / "payload.pth"
    torch.save({"model": sd, "extra": Payload()}, payload)
    with pytest.raises(ValueError, match="weights_only"):
        load_model(payload, config=micro())
    assert SIDE_EFFECTS == []


def test_i2v_and_uninferable_heads(tmp_path: Path) -> None:
    sd = sd_of(random_model(micro()))
    i2v = {**sd, "blocks.0.cross_attn.k_img.weight": torch.zeros(32, 32)}
    with pytest.raises(ValueError, match="i2v.safetensors.*image-to-video"):
        load_model(_write(tmp_path / "i2v.safetensors", i2v))
    with pytest.raises(ValueError, match="image-to-video"):
        to_official_keys({"condition_embedder.image_embedder.ff.net.0.proj.weight": torch.zeros(1)})
    bare = tmp_path / "bare.safetensors"
    save_file(sd, str(bare))
    with pytest.raises(ValueError, match=r"bare.safetensors.*num_heads.*config="):
        load_model(bare)
    with pytest.raises(ValueError, match="generator_ema"):
        load_model(_write(tmp_path / "plain.safetensors", sd), use_ema=True)


# ---------------------------------------------------------------- pure key functions


def test_key_mapping_is_invertible_and_infers_config() -> None:
    sd = sd_of(random_model(tiny()))
    assert to_official_keys(to_diffusers_keys(sd)) == sd
    assert to_official_keys({"_orig_mod.model.blocks.0._fsdp_wrapped_module.norm3.weight": 1}) == {
        "blocks.0.norm3.weight": 1}
    cfg = infer_config(sd, hint={"text_len": 16, "num_heads": 2, "patch_size": [1, 2, 2]})
    assert cfg == tiny()
    with pytest.raises(ValueError, match="unknown"):
        infer_config(sd, hint={"depth": 3})
    with pytest.raises(ValueError, match="missing"):
        infer_config({"head.head.weight": torch.zeros(1)})
    with pytest.raises(ValueError, match="top-level keys"):
        select_state_dict({"optimizer": {"lr": 1.0}}, use_ema=None)
    with pytest.raises(ValueError, match="both map"):
        to_official_keys({"model.head.modulation": 1, "head.modulation": 2})


def test_learned_positions_round_trip_with_and_without_metadata(tmp_path: Path) -> None:
    cfg = dataclasses.replace(micro(), position_grid=(2, 2))
    model = random_model(cfg)
    path = tmp_path / "toy.safetensors"
    save_model(model, path)
    assert_same(load_model(path), model)
    bare = tmp_path / "bare.safetensors"  # the grid is read off the table's shape
    save_file(sd_of(random_model(dataclasses.replace(TINY_512, position_grid=(2, 2)))), str(bare))
    assert load_model(bare).config.position_grid == (2, 2)
    with pytest.raises(ValueError, match="unexpected key 'pos_embedding'"):  # a config without the table
        load_model(path, config=micro())


def _raw_safetensors(path: Path, header: dict, data: bytes = b"", length: int | None = None) -> Path:
    """Write a safetensors file byte by byte (a crafted header the safetensors library would refuse to write)."""
    text = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(text) if length is None else length) + text + data)
    return path


def test_crafted_safetensors_are_refused_by_the_caps_in_milliseconds(tmp_path: Path) -> None:
    # 20,000 tiny "blocks" (the file that froze the server for 73 s): refused from the header, before any model
    blocks = {f"blocks.{i}.norm3.weight": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]} for i in range(20_000)}
    many = _raw_safetensors(tmp_path / "many.safetensors", blocks, b"\0" * 4)
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"many.safetensors: .*20000 tensors; a Wan2.1 checkpoint has at most 10000"):
        inspect_checkpoint(many)
    assert time.perf_counter() - start < 1.0
    counted = tmp_path / "counted.safetensors"  # the tensor count is read before the JSON is parsed
    text = b'{' + b'"data_offsets":[0,4],' * 10_001 + b'not json'
    counted.write_bytes(struct.pack("<Q", len(text)) + text)
    with pytest.raises(ValueError, match="holds 10001 tensors"):
        inspect_checkpoint(counted)
    few = {f"blocks.{i}.norm3.weight": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]} for i in range(200)}
    with pytest.raises(ValueError, match="200 transformer blocks; at most 128"):
        inspect_checkpoint(_raw_safetensors(tmp_path / "blocks.safetensors", few, b"\0" * 4))
    cases = [
        ({"a": {"dtype": "F32", "shape": [2**31], "data_offsets": [0, 4]}}, "shape"),
        ({"a": {"dtype": "F32", "shape": [1] * 9, "data_offsets": [0, 4]}}, "at most 6 dimensions"),
        ({"a": {"dtype": "Q4", "shape": [1], "data_offsets": [0, 4]}}, "unknown dtype"),
        ({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 10**12]}}, "outside the file"),
        ({"__metadata__": {"k": 1}}, "__metadata__"),
    ]
    for header, message in cases:
        with pytest.raises(ValueError, match=message):
            inspect_checkpoint(_raw_safetensors(tmp_path / "bad.safetensors", header, b"\0" * 4))
    with pytest.raises(ValueError, match="at most 16777216 read"):
        inspect_checkpoint(_raw_safetensors(tmp_path / "long.safetensors", {}, b"", length=2**40))
    (tmp_path / "tiny.safetensors").write_bytes(b"\1\2")
    with pytest.raises(ValueError, match="shorter than a safetensors header"):
        inspect_checkpoint(tmp_path / "tiny.safetensors")


def test_inspection_is_cached_per_path_mtime_and_size(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    save_model(random_model(micro()), path)
    assert inspect_checkpoint_cached(path) == micro()
    hits = _inspect_by_stat.cache_info().hits
    assert inspect_checkpoint_cached(path) == micro()
    assert _inspect_by_stat.cache_info().hits == hits + 1
    _raw_safetensors(path, {"a": {"dtype": "Q4", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4)  # new size
    for _ in range(2):  # the failure is remembered and raised again
        with pytest.raises(ValueError, match="unknown dtype"):
            inspect_checkpoint_cached(path)
    with pytest.raises(FileNotFoundError):
        inspect_checkpoint_cached(tmp_path / "gone.safetensors")


def test_crafted_zip_checkpoints_are_refused_before_unpickling(tmp_path: Path) -> None:
    many = {f"blocks.{i}.norm3.weight": torch.zeros(1) for i in range(10_100)}  # one storage member per tensor
    torch.save(many, tmp_path / "many.pt")
    with pytest.raises(ValueError, match=r"many.pt: 1010\d archive members.*at most 10016 members"):
        inspect_checkpoint(tmp_path / "many.pt")
    with zipfile.ZipFile(tmp_path / "bigpickle.pt", "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02" + b"N" * (16 * 1024**2 + 1))
    with pytest.raises(ValueError, match="bigpickle.pt: 1 archive members, pickle of 16777219 bytes"):
        inspect_checkpoint(tmp_path / "bigpickle.pt")
