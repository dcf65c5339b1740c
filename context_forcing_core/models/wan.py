"""The Wan2.1 text-to-video DiT with per-frame timesteps and pluggable self-attention.

One module serves the bidirectional teacher/critic, the block-causal student in training, and the
chunk-by-chunk student at inference: only the :class:`AttentionContext` differs. Parameter names match the
official Wan2.1 checkpoints (Wan-Video/Wan2.1 wan/modules/model.py), so weights load without renaming.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from einops import rearrange
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from .attention import AttentionContext, CrossAttention, DenseAttention, Grid, SelfAttention
from .config import WanConfig
from .layers import FeedForward, autocast_off, layer_norm_fp32, timestep_sinusoid


@dataclass(slots=True)
class TextContext:
    """A prompt prepared once for all denoising passes: per-layer cross-attention keys and values."""

    keys: list[Tensor]
    """Per layer, (B, Lt, H, D)."""
    values: list[Tensor]
    """Per layer, (B, Lt, H, D)."""

    @property
    def batch_size(self) -> int:
        """Number of prompts B."""
        return self.keys[0].shape[0]


def _modulate(x: Tensor, shift: Tensor, scale: Tensor, frames: int) -> Tensor:
    """X (B, L, dim) * (1 + scale) + shift with per-frame (B, F, 1, dim) modulation."""
    xf = x.unflatten(1, (frames, -1))  # (B, F, N, dim)
    return (xf * (1 + scale) + shift).flatten(1, 2)


def _gate(y: Tensor, gate: Tensor, frames: int) -> Tensor:
    """Y (B, L, dim) scaled by a per-frame gate (B, F, 1, dim)."""
    return (y.float().unflatten(1, (frames, -1)) * gate).flatten(1, 2)


class WanBlock(nn.Module):
    """Self-attention, text cross-attention and FFN with 6-way adaLN modulation."""

    def __init__(self, cfg: WanConfig) -> None:
        super().__init__()
        self.eps = cfg.eps
        self.self_attn = SelfAttention(cfg.dim, cfg.num_heads, cfg.eps)
        self.norm3 = nn.LayerNorm(cfg.dim, eps=cfg.eps, elementwise_affine=True)
        self.cross_attn = CrossAttention(cfg.dim, cfg.num_heads, cfg.eps)
        self.ffn = FeedForward(cfg.dim, cfg.ffn_dim)
        self.modulation = nn.Parameter(torch.randn(1, 6, cfg.dim) / cfg.dim**0.5)

    def forward(
        self, x: Tensor, e0: Tensor, text_k: Tensor, text_v: Tensor, layer: int, grid: Grid, attn: AttentionContext,
        kv_only: bool = False,
    ) -> Tensor:
        """One block (``kv_only``: only its self-attention K/V, through :meth:`write_kv`; ``x`` comes back unchanged).
        Both go through the module call, so hooks on the block (FSDP's unsharding) see them.

        Args:
            x: (B, L, dim) float32 residual stream.
            e0: (B, F, 6, dim) float32 per-frame timestep projection.
            text_k, text_v: (B, Lt, H, D) this layer's text keys and values.
            layer: block index, passed to the attention context.
            grid: (F, h, w) token grid.
            attn: decides what self-attention sees.

        Returns:
            (B, L, dim) float32.

        """
        if kv_only:
            self.write_kv(x, e0, layer, grid, attn)
            return x
        dtype, frames = self.modulation.dtype, grid[0]
        mod = (self.modulation.float() + e0).unsqueeze(3)  # (B, F, 6, 1, dim)
        shift1, scale1, gate1, shift2, scale2, gate2 = mod.unbind(2)  # each (B, F, 1, dim)
        y = self.self_attn(self._attn_input(x, shift1, scale1, frames), layer, grid, attn)
        x = x + _gate(y, gate1, frames)
        normed = nn.functional.layer_norm(x, x.shape[-1:], self.norm3.weight.float(), self.norm3.bias.float(), self.eps)
        x = x + self.cross_attn(normed.to(dtype), text_k, text_v).float()  # norm3 in fp32 as upstream
        y = self.ffn(_modulate(layer_norm_fp32(x, self.eps), shift2, scale2, frames).to(dtype))
        return x + _gate(y, gate2, frames)

    def _attn_input(self, x: Tensor, shift: Tensor, scale: Tensor, frames: int) -> Tensor:
        return _modulate(layer_norm_fp32(x, self.eps), shift, scale, frames).to(self.modulation.dtype)

    def write_kv(self, x: Tensor, e0: Tensor, layer: int, grid: Grid, attn: AttentionContext) -> None:
        """Only what a commit pass keeps of the block: its self-attention keys and values, the same as
        :meth:`forward` computes, handed to ``attn.write_only`` (nothing attended, nothing returned).
        """
        mod = (self.modulation.float() + e0).unsqueeze(3)  # (B, F, 6, 1, dim)
        shift1, scale1 = mod.unbind(2)[:2]  # each (B, F, 1, dim)
        k, v = self.self_attn.kv(self._attn_input(x, shift1, scale1, grid[0]))
        attn.write_only(layer, k, v, grid)


class Head(nn.Module):
    """Output projection with 2-way modulation; keys ``head.head`` and ``head.modulation``."""

    def __init__(self, cfg: WanConfig) -> None:
        super().__init__()
        self.eps = cfg.eps
        p = cfg.patch_size
        self.head = nn.Linear(cfg.dim, cfg.out_channels * p[0] * p[1] * p[2])
        self.modulation = nn.Parameter(torch.randn(1, 2, cfg.dim) / cfg.dim**0.5)

    def forward(self, x: Tensor, e: Tensor, frames: int) -> Tensor:
        """X (B, L, dim) float32, e (B, F, dim) float32 -> (B, L, out * prod(patch))."""
        shift, scale = (self.modulation.float() + e.unsqueeze(2)).unsqueeze(3).unbind(2)  # (B, F, 1, dim)
        return self.head(_modulate(layer_norm_fp32(x, self.eps), shift, scale, frames).to(self.head.weight.dtype))


class WanModel(nn.Module):
    """Wan2.1 T2V diffusion transformer predicting the flow v = eps - x0."""

    gradient_checkpointing: bool
    """Recompute each block's activations in backward instead of storing them (training mode with autograd only)."""

    def __init__(self, cfg: WanConfig) -> None:
        super().__init__()
        self.config = cfg
        self.gradient_checkpointing = False
        self.patch_embedding = nn.Conv3d(cfg.in_channels, cfg.dim, kernel_size=cfg.patch_size, stride=cfg.patch_size)
        if cfg.position_grid is not None:  # (h, w, dim), not in Wan2.1 (see WanConfig.position_grid)
            self.pos_embedding = nn.Parameter(torch.randn(*cfg.position_grid, cfg.dim) * 0.5)
        self.text_embedding = nn.Sequential(
            nn.Linear(cfg.text_dim, cfg.dim), nn.GELU(approximate="tanh"), nn.Linear(cfg.dim, cfg.dim)
        )
        self.time_embedding = nn.Sequential(nn.Linear(cfg.freq_dim, cfg.dim), nn.SiLU(), nn.Linear(cfg.dim, cfg.dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(cfg.dim, cfg.dim * 6))
        self.blocks = nn.ModuleList(WanBlock(cfg) for _ in range(cfg.num_layers))
        self.head = Head(cfg)

    @property
    def dtype(self) -> torch.dtype:
        """Parameter dtype."""
        return self.patch_embedding.weight.dtype

    @property
    def device(self) -> torch.device:
        """Parameter device."""
        return self.patch_embedding.weight.device

    def enable_gradient_checkpointing(self, enabled: bool = True) -> WanModel:
        """Checkpoint every transformer block (non-reentrant); returns the model.

        Active only while the model is in training mode and autograd is recording: inference and ``no_grad``
        passes run unchanged. A block's forward runs again in backward, so its attention context must give the
        same answer then; the dense contexts are stateless, and the memory context keeps a snapshot of what a
        gradient-recording pass read (see :class:`~context_forcing_core.memory.slow_fast.MemoryAttention`).
        """
        self.gradient_checkpointing = enabled
        return self

    def encode_text(self, text: Tensor) -> TextContext:
        """Embed raw text-encoder states once and precompute every layer's cross-attention K/V.

        Args:
            text: (B, L, text_dim) umT5 states; zero-padded here to ``config.text_len`` rows as upstream.

        """
        cfg = self.config
        if text.ndim != 3 or text.shape[-1] != cfg.text_dim:
            raise ValueError(
                f"text embeddings must have shape (batch, tokens, {cfg.text_dim}) for this model, got {tuple(text.shape)}"
            )
        if text.shape[1] < cfg.text_len:
            text = torch.cat([text, text.new_zeros(text.shape[0], cfg.text_len - text.shape[1], text.shape[2])], 1)
        ctx = self.text_embedding(text.to(device=self.device, dtype=self.dtype))  # (B, Lt, dim)
        kv = [block.cross_attn.text_kv(ctx) for block in self.blocks]
        return TextContext(keys=[k for k, _ in kv], values=[v for _, v in kv])

    def forward(
        self,
        latents: Tensor,
        timesteps: Tensor,
        text: Tensor | TextContext,
        *,
        attention: Literal["bidirectional", "block_causal"] | AttentionContext = "bidirectional",
        chunk_frames: int = 3,
        kv_only: bool = False,
    ) -> Tensor | None:
        """Predict the flow for a clip, or for one chunk against a memory.

        Args:
            latents: (B, C, F, H, W) normalised latents x_t.
            timesteps: (B,) one t in [0, 1000] per clip, or (B, F) one per latent frame.
            text: (B, Lt, text_dim) raw text states, or a :class:`TextContext` from :meth:`encode_text`.
            attention: "bidirectional" (teacher, critic), "block_causal" (student in training: a frame sees its
                own chunk and earlier ones, absolute positions), or an :class:`AttentionContext` such as a
                memory reader for chunk-by-chunk inference.
            chunk_frames: latent frames per chunk for "block_causal".
            kv_only: a commit pass whose flow nobody reads. Where the context can write without attending
                (``attention.write_only``, as a memory's ``attention(commit=True)`` does), the last block stops at its
                self-attention keys and values, which the context writes, and no flow is computed: the memory then
                holds what a full commit pass would have written. Other contexts run the whole pass.

        Returns:
            (B, C_out, F, H, W) flow prediction in the parameter dtype; None where ``kv_only`` stopped early.

        """
        cfg = self.config
        if latents.ndim != 5 or latents.shape[1] != cfg.in_channels:
            raise ValueError(f"latents must be (B, {cfg.in_channels}, F, H, W), got {tuple(latents.shape)}")
        b, _, f, hh, ww = latents.shape
        pt, ph, pw = cfg.patch_size
        if f % pt or hh % ph or ww % pw:
            raise ValueError(f"latent size (F, H, W) = {(f, hh, ww)} is not divisible by the patch {cfg.patch_size}")
        if attention == "block_causal" and f % chunk_frames:
            raise ValueError(f"block-causal attention needs a whole number of {chunk_frames}-frame chunks, got F={f}")
        grid: Grid = (f // pt, hh // ph, ww // pw)
        if isinstance(attention, str):
            if attention not in ("bidirectional", "block_causal"):
                raise ValueError(f"unknown attention {attention!r}; allowed: 'bidirectional', 'block_causal', or a context")
            attention = DenseAttention(
                split=cfg.rope_split, theta=cfg.rope_theta,
                chunk_frames=chunk_frames // pt if attention == "block_causal" else None,
            )
        kv_only = kv_only and callable(getattr(attention, "write_only", None))
        if not isinstance(text, TextContext):
            text = self.encode_text(text)
        if text.batch_size != b:
            raise ValueError(f"text batch {text.batch_size} does not match latent batch {b}")

        e, e0 = self._time(timesteps, b, f, grid[0])
        x = self.patch_embedding(latents.to(device=self.device, dtype=self.dtype))  # (B, dim, F', h, w)
        if cfg.position_grid is not None:
            if tuple(grid[1:]) != cfg.position_grid:
                raise ValueError(f"this model's learned positions cover a {cfg.position_grid} token grid; latents "
                                 f"of {(hh, ww)} give {grid[1:]}")
            x = x + self.pos_embedding.permute(2, 0, 1)[:, None].to(x.dtype)  # (dim, 1, h, w)
        x = rearrange(x, "b d f h w -> b (f h w) d").float()
        recompute = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for i, block in enumerate(self.blocks):
            last_kv = kv_only and i == len(self.blocks) - 1  # the last block's K/V are all the pass leaves behind
            args = (x, e0, text.keys[i], text.values[i], i, grid, attention, last_kv)
            x = checkpoint(block, *args, use_reentrant=False) if recompute else block(*args)  # (B, L, dim)
            if last_kv:
                return None
        with autocast_off(self.device):  # float32 head under a bfloat16 autocast, as upstream
            out = self.head(x, e, grid[0])  # (B, L, pt*ph*pw*C)
        return rearrange(
            out, "b (f h w) (pf ph pw c) -> b c (f pf) (h ph) (w pw)", f=grid[0], h=grid[1], w=grid[2], pf=pt, ph=ph, pw=pw
        )

    def _time(self, timesteps: Tensor, b: int, f: int, tokens_f: int) -> tuple[Tensor, Tensor]:
        """Per-frame time embedding e (B, F', dim) and projection e0 (B, F', 6, dim), float32."""
        t = timesteps.to(self.device)
        if t.ndim == 1:
            t = t[:, None].expand(-1, f)
        if t.shape != (b, f):
            raise ValueError(f"timesteps must be (B,) or (B, F) = {(b, f)}, got {tuple(timesteps.shape)}")
        t = t[:, :: self.config.patch_size[0]]  # one timestep per temporal token
        with autocast_off(self.device):  # modulation stays float32 under a bfloat16 autocast, as upstream
            sin = timestep_sinusoid(t, self.config.freq_dim).to(self.dtype)
            e = self.time_embedding(sin)  # (B, F', dim)
            e0 = self.time_projection(e).unflatten(-1, (6, -1))  # (B, F', 6, dim)
        return e.float(), e0.float()
