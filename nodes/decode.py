"""Context Forcing Toy Decode: the toy model's latents to frames (its codec is exact, no VAE file needed)."""

from __future__ import annotations

import torch
from comfy_api.v0_0_2 import io

from context_forcing_core.diffusion.settings import DECODE_SCALE
from context_forcing_core.toyworld.codec import ToyCodec

from .types import CATEGORY, limits


class ToyDecode(io.ComfyNode):
    """LATENT of the toy model (B, 48, T, 8, 8) -> IMAGE frames (T, 32 * scale, 32 * scale, 3)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="CF_ToyDecode",
            display_name="Context Forcing Toy Decode",
            category=CATEGORY,
            description="Turns the bundled toy model's latents into video frames (32 x 32 pixels, enlarged by "
                        "'scale' without smoothing). Wan latents go through core VAE Decode instead.",
            inputs=[io.Latent.Input("latent"), io.Int.Input("scale", default=8, **limits(DECODE_SCALE))],
            outputs=[io.Image.Output(display_name="images")],
        )

    @classmethod
    def execute(cls, latent: dict, scale: int) -> io.NodeOutput:
        if not (isinstance(latent, dict) and isinstance(latent.get("samples"), torch.Tensor)):
            return io.NodeOutput(None, block_execution="Toy Decode: input 'latent' must be connected to a LATENT "
                                                       "(Context Forcing Long Rollout Sampler)")
        raw = latent["samples"]
        codec = ToyCodec()
        if raw.ndim != 5 or raw.shape[1] != codec.latent_channels:
            return io.NodeOutput(None, block_execution=f"Toy Decode takes toy-model latents (B, {codec.latent_channels}, "
                                                 f"T, 8, 8), got {tuple(raw.shape)}; decode Wan latents with VAE Decode")
        frames = codec.decode(codec.normalize(raw.float().cpu())).clamp(0, 1)  # (B, T, 3, 32, 32)
        frames = frames.flatten(0, 1).repeat_interleave(scale, -1).repeat_interleave(scale, -2)
        return io.NodeOutput(frames.permute(0, 2, 3, 1).contiguous())  # (B*T, H, W, 3)
