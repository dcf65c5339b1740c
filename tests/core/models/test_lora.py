"""LoRA merging: every layout against a hand-computed W + strength * alpha / r * B A; bad files name their key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import random_model
from safetensors.torch import save_file

from context_forcing_core.diffusion.sampler import generate
from context_forcing_core.models.config import micro
from context_forcing_core.models.loading import load_model
from context_forcing_core.models.lora import merge_lora, parse_lora, read_lora

RANK = 4
TARGETS = {"blocks.0.self_attn.q": (32, 32), "blocks.1.ffn.0": (64, 32), "blocks.1.cross_attn.o": (32, 32)}
DIFFUSERS = {"blocks.0.self_attn.q": "blocks.0.attn1.to_q", "blocks.1.ffn.0": "blocks.1.ffn.net.0.proj",
             "blocks.1.cross_attn.o": "blocks.1.attn2.to_out.0"}


def factors(seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """module -> (A (r, in), B (out, r))."""
    g = torch.Generator().manual_seed(seed)
    return {m: (torch.randn(RANK, i, generator=g), torch.randn(o, RANK, generator=g)) for m, (o, i) in TARGETS.items()}


def expected(base: dict[str, torch.Tensor], fac, strength: float, scale: float) -> dict[str, torch.Tensor]:
    """Hand-computed merge in float64, cast back to the weights' dtype."""
    out = dict(base)
    for m, (a, b) in fac.items():
        w = base[f"{m}.weight"]
        out[f"{m}.weight"] = (w.double() + strength * scale * (b.double() @ a.double())).to(w.dtype)
    return out


def peft_keys(fac, prefix: str = "base_model.model.", adapter: str = "") -> dict[str, torch.Tensor]:
    sd = {}
    for m, (a, b) in fac.items():
        sd[f"{prefix}{m}.lora_A{adapter}.weight"] = a
        sd[f"{prefix}{m}.lora_B{adapter}.weight"] = b
    return sd


def assert_merged(model, base, fac, strength, scale, atol=1e-5):
    want = expected(base, fac, strength, scale)
    for key, value in model.state_dict().items():
        assert torch.allclose(value, want[key], atol=atol), key


@pytest.fixture
def base_file(tmp_path: Path):
    model = random_model(micro(), seed=3)
    path = tmp_path / "base.safetensors"
    from context_forcing_core.models.loading import save_model

    save_model(model, path)
    return path, {k: v.clone() for k, v in model.state_dict().items()}


def test_peft_safetensors_with_adapter_config_alpha(tmp_path, base_file):
    path, base = base_file
    fac = factors()
    (tmp_path / "peft").mkdir()
    save_file(peft_keys(fac), tmp_path / "peft" / "adapter_model.safetensors")
    (tmp_path / "peft" / "adapter_config.json").write_text(json.dumps({"r": RANK, "lora_alpha": 8}))
    model = load_model(path, lora=[(tmp_path / "peft" / "adapter_model.safetensors", 0.5)])
    assert_merged(model, base, fac, 0.5, 8 / RANK)


def test_longlive_base_plus_generator_lora_loads_and_samples(tmp_path):
    base_model = random_model(micro(), seed=4)
    base = {k: v.clone() for k, v in base_model.state_dict().items()}
    torch.save({"generator_ema": {"model." + k: v for k, v in base.items()}}, tmp_path / "longlive_base.pt")
    fac = factors(1)  # LongLive: PEFT on the wrapper's .model, alpha = r (scale 1), stored under generator_lora
    torch.save({"generator_lora": peft_keys(fac, prefix="base_model.model.model.")}, tmp_path / "lora.pt")
    model = load_model(tmp_path / "longlive_base.pt", config=micro(), lora=[(tmp_path / "lora.pt", 1.0)])
    assert_merged(model, base, fac, 1.0, 1.0)
    text = torch.randn(1, 3, micro().text_dim)
    kw = dict(num_latent_frames=6, seed=0, latent_size=(4, 4))
    with_lora, without = generate(model, text, **kw).latents, generate(base_model, text, **kw).latents
    assert torch.isfinite(with_lora).all() and not torch.allclose(with_lora, without)


def test_comfyui_kohya_layout_with_alpha_and_diffusers_names(tmp_path, base_file):
    path, base = base_file
    fac = factors(2)
    sd = {}
    for m, (a, b) in fac.items():
        sd[f"diffusion_model.{m}.lora_down.weight"] = a
        sd[f"diffusion_model.{m}.lora_up.weight"] = b
        sd[f"diffusion_model.{m}.alpha"] = torch.tensor(2.0)
    save_file(sd, tmp_path / "wan_lora.safetensors")
    model = load_model(path, lora=[(tmp_path / "wan_lora.safetensors", 1.5)])
    assert_merged(model, base, fac, 1.5, 2.0 / RANK)
    diffusers = {f"transformer.{DIFFUSERS[m]}.lora_{x}.weight": t
                 for m, (a, b) in fac.items() for x, t in (("A", a), ("B", b))}
    assert set(parse_lora(diffusers, name="d")) == set(TARGETS)


def test_bf16_weights_merge_in_float32(base_file):
    path, _ = base_file
    model = load_model(path, dtype=torch.bfloat16)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    fac = factors(3)
    merge_lora(model, read_lora(peft_keys(fac)), 1.0, name="x")
    assert_merged(model, base, fac, 1.0, 1.0, atol=0.07)  # one bfloat16 rounding of the sum
    assert model.blocks[0].self_attn.q.weight.dtype == torch.bfloat16


@pytest.mark.parametrize(("sd", "match"), [
    ({"base_model.model.blocks.0.self_attn.q.lora_A.weight": torch.zeros(RANK, 32)}, "has no up"),
    ({"diffusion_model.blocks.9.self_attn.q.lora_down.weight": torch.zeros(RANK, 32),
      "diffusion_model.blocks.9.self_attn.q.lora_up.weight": torch.zeros(32, RANK)}, "'blocks.9.self_attn.q'.*nothing"),
    ({"diffusion_model.blocks.0.self_attn.q.lora_down.weight": torch.zeros(RANK, 31),
      "diffusion_model.blocks.0.self_attn.q.lora_up.weight": torch.zeros(32, RANK)}, "shape .32, 31."),
    ({"diffusion_model.patch_embedding.lora_down.weight": torch.zeros(RANK, 4),
      "diffusion_model.patch_embedding.lora_up.weight": torch.zeros(32, RANK)}, "only Linear"),
    ({"blocks.0.self_attn.q.weight": torch.zeros(32, 32)}, "'blocks.0.self_attn.q.weight' is not a LoRA key"),
    ({"diffusion_model.blocks.0.self_attn.q.alpha": torch.zeros(2)}, "one finite number"),
])
def test_bad_loras_are_refused_before_any_weight_changes(tmp_path, base_file, sd, match):
    path, base = base_file
    save_file(sd, tmp_path / "bad.safetensors")
    with pytest.raises(ValueError, match=match) as err:
        load_model(path, lora=[(tmp_path / "bad.safetensors", 1.0)])
    assert "bad.safetensors" in str(err.value)
    model = load_model(path)
    with pytest.raises(ValueError):
        merge_lora(model, read_lora(tmp_path / "bad.safetensors"), 1.0, name="bad")
    assert all(torch.equal(v, base[k]) for k, v in model.state_dict().items()), "nothing merged"
