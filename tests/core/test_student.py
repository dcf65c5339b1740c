"""Student: toy vs Wan, seconds to frames, latent sizes, bundled text encoder, KV budget against a real rollout."""

from __future__ import annotations

import pytest
import torch

from context_forcing_core import generate, memory_preset, save_model
from context_forcing_core.latents import wan_normalize
from context_forcing_core.models.config import WanConfig
from context_forcing_core.models.loading import inspect_checkpoint
from context_forcing_core.models.wan import WanModel
from context_forcing_core.student import BUNDLED_TOY_STUDENT, Student, load_student
from context_forcing_core.toyworld.codec import ToyCodec
from context_forcing_core.toyworld.text import ToyTextEncoder

TOY = WanConfig(dim=32, ffn_dim=64, freq_dim=16, num_layers=2, num_heads=2, in_channels=48, out_channels=48,
                text_dim=4096, text_len=16)
WAN = WanConfig(dim=32, ffn_dim=64, freq_dim=16, num_layers=3, num_heads=2, text_dim=8, text_len=4)


def _student(cfg: WanConfig) -> Student:
    torch.manual_seed(0)
    return Student(model=WanModel(cfg).eval(), name="t", toy=cfg.in_channels == 48)


def test_seconds_round_up_to_whole_chunks():
    s = _student(WAN)
    assert s.latent_frames(60.0, 3) == 240 and s.latent_frames(1.0, 3) == 6 and s.latent_frames(0.25, 3) == 3
    assert s.latent_frames(3600.0, 3) == 14_400
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="positive number of seconds"):
            s.latent_frames(bad, 3)
    for bad in (0.1, 3600.25, 1e300):
        with pytest.raises(ValueError, match=r"seconds must lie in \[0.25, 3600.0\]"):
            s.latent_frames(bad, 3)


def test_latent_sizes_and_text():
    wan, toy = _student(WAN), _student(TOY)
    assert wan.latent_size(832, 480) == (60, 104) and toy.latent_size(832, 480) == (8, 8)
    with pytest.raises(ValueError, match="Wan video size: width must be a multiple of 16, got 830"):
        wan.latent_size(830, 480)
    with pytest.raises(ValueError, match=r"width must lie in \[16, 4096\], got 999999984"):
        wan.latent_size(999_999_984, 480)
    assert torch.equal(toy.encode_prompt("a snow scene"), ToyTextEncoder().encode(["a snow scene"]))
    with pytest.raises(ValueError, match="CONDITIONING"):
        wan.encode_prompt("a fox")
    x = torch.randn(1, 16, 2, 3, 3)
    torch.testing.assert_close(wan_normalize(wan.raw_latents(x)), x, rtol=0, atol=1e-5)
    y = torch.randn(1, 48, 2, 8, 8)
    assert torch.equal(toy.raw_latents(y), ToyCodec().denormalize(y))


@pytest.mark.parametrize("preset", ["context_forcing", "self_forcing", "full"])
def test_kv_budget_equals_what_a_rollout_allocates(preset):
    s = _student(WAN)
    memory = memory_preset(preset)
    trace = generate(s.model, torch.randn(1, 4, 8), num_latent_frames=36, memory=memory, latent_size=(4, 6)).trace
    budget = s.kv_cache_bytes(memory, (4, 6), 36)
    if memory.bounded:  # buffers of the full capacity from the first chunk
        assert budget == max(c.allocated_bytes for c in trace.chunks)
    else:  # every frame stays; buffers grow ahead of use; K and V held plus their rotated keys end at the budget
        assert budget == trace.chunks[-1].cache_bytes * 3 // 2


def test_load_student_tells_toy_from_wan_and_inspect_reads_only_the_header(tmp_path):
    for cfg, toy in ((TOY, True), (WAN, False)):
        torch.manual_seed(0)
        save_model(WanModel(cfg), tmp_path / "m.safetensors")
        assert inspect_checkpoint(tmp_path / "m.safetensors") == cfg
        assert load_student(tmp_path / "m.safetensors").toy is toy
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(ValueError, match="bad.safetensors"):
        inspect_checkpoint(tmp_path / "bad.safetensors")
    assert load_student(BUNDLED_TOY_STUDENT, dtype=torch.float32).toy
