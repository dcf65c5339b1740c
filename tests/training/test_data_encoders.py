"""Wan VAE and umT5 wrappers against direct calls of diffusers / transformers on tiny models saved in real formats."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from data_tiny_models import LATENTS_MEAN, LATENTS_STD, save_tiny_wan  # noqa: E402

from training.data.encoders import UMT5TextEncoder, WanVideoEncoder, component_dir, tokenizer_dir  # noqa: E402


@pytest.fixture(scope="module")
def wan_root(tmp_path_factory):
    return save_tiny_wan(tmp_path_factory.mktemp("wan"))


def test_vae_latents_are_the_normalised_posterior_mean(wan_root):
    from diffusers import AutoencoderKLWan

    torch.manual_seed(1)
    video = torch.rand(2, 3, 9, 16, 16) * 2 - 1  # (B, 3, T, H, W) in [-1, 1]
    enc = WanVideoEncoder.from_pretrained(wan_root)  # pipeline root -> vae/
    z = enc(video)
    assert z.shape == (2, 16, 3, 2, 2) and z.dtype == torch.float32 and enc.latent_channels == 16
    vae = AutoencoderKLWan.from_pretrained(wan_root / "vae").eval()
    with torch.no_grad():
        moments = vae._encode(video)  # (B, 32, F, h, w): mean then log-variance channels
    mu = moments[:, :16]
    expected = torch.stack([(mu[:, c] - LATENTS_MEAN[c]) / LATENTS_STD[c] for c in range(16)], dim=1)
    torch.testing.assert_close(z, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(enc(video), z)  # deterministic: no posterior sampling
    torch.testing.assert_close(WanVideoEncoder.from_pretrained(wan_root / "vae")(video[:1]), z[:1], rtol=1e-5,
                               atol=1e-5)


def test_vae_rejects_frame_counts_off_the_temporal_stride(wan_root):
    enc = WanVideoEncoder.from_pretrained(wan_root)
    with pytest.raises(ValueError, match="4k \\+ 1"):
        enc(torch.zeros(1, 3, 8, 16, 16))
    with pytest.raises(ValueError, match="multiples of 8"):
        enc(torch.zeros(1, 3, 5, 12, 16))


def test_text_states_match_the_encoder_and_are_zero_past_the_tokens(wan_root):
    from transformers import AutoTokenizer, UMT5EncoderModel

    enc = UMT5TextEncoder.from_pretrained(wan_root)
    assert enc.width == UMT5EncoderModel.from_pretrained(wan_root / "text_encoder").config.d_model == 16
    prompts = ["a cat runs on the beach", "the  red car\n at night", "ocean"]
    out = enc.encode(prompts)
    assert out.states.shape == (3, 512, enc.width)
    assert out.lengths.tolist() == [7, 6, 2]  # words + </s>
    model = UMT5EncoderModel.from_pretrained(wan_root / "text_encoder").eval()
    tok = AutoTokenizer.from_pretrained(wan_root / "tokenizer")
    for i, p in enumerate(["a cat runs on the beach", "the red car at night", "ocean"]):
        ids = tok(p, return_tensors="pt").input_ids  # (1, n), unpadded
        with torch.no_grad():
            direct = model(input_ids=ids).last_hidden_state[0]  # (n, D)
        n = out.lengths[i]
        torch.testing.assert_close(out.states[i, :n], direct, rtol=1e-4, atol=1e-5)
        assert out.states[i, :n].abs().sum(-1).gt(0).all() and not out.states[i, n:].any()
    assert torch.equal(enc(prompts), out.states)


def test_long_prompts_are_truncated_to_max_tokens(wan_root):
    enc = UMT5TextEncoder.from_pretrained(wan_root, max_tokens=8)
    out = enc.encode(["a cat " * 20, "dog"])
    assert out.states.shape == (2, 8, 16) and out.lengths.tolist() == [8, 2]


def test_component_and_tokenizer_lookup(wan_root, tmp_path):
    assert component_dir(wan_root, "vae") == wan_root / "vae"
    assert component_dir(wan_root / "vae", "vae") == wan_root / "vae"
    assert tokenizer_dir(wan_root / "text_encoder") == wan_root / "tokenizer"
    with pytest.raises(FileNotFoundError, match="text_encoder"):
        component_dir(tmp_path, "text_encoder")
    with pytest.raises(FileNotFoundError, match="tokenizer"):
        tokenizer_dir(tmp_path)
