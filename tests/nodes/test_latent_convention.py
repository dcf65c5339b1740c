"""The sampler's LATENT is in ComfyUI's convention: raw Wan VAE latents, exactly what its Wan21 latent format
un-normalises to (checked against ComfyUI 0.3.75's own comfy/latent_formats.py)."""

from __future__ import annotations

import torch
from comfy_stubs import comfy_latent_formats

from context_forcing_core.latents import wan_denormalize, wan_normalize


def test_wan_normalisation_equals_comfyui_latent_format():
    fmt = comfy_latent_formats().Wan21()
    torch.manual_seed(0)
    raw = torch.randn(2, 16, 3, 4, 5) * 3
    torch.testing.assert_close(wan_normalize(raw), fmt.process_in(raw), rtol=0, atol=1e-6)
    x = torch.randn(2, 16, 3, 4, 5)
    torch.testing.assert_close(wan_denormalize(x), fmt.process_out(x), rtol=0, atol=1e-6)
    torch.testing.assert_close(wan_denormalize(wan_normalize(raw)), raw, rtol=0, atol=1e-5)
