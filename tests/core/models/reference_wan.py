"""Independent float64 reference of the Wan2.1 T2V DiT forward, written from the upstream recipe.

This module deliberately does not import anything from ``context_forcing_core``: it reads the official
state-dict keys (Wan-Video/Wan2.1 wan/modules/model.py) and recomputes the flow prediction in float64 in the
style of upstream ``WanModel.forward``: per-sample complex RoPE (``rope_params`` / ``rope_apply``), attention
with the softmax written out, and the unpatchify einsum. Per-frame timesteps follow the causal variants
(Self-Forcing wan/modules/causal_model.py): ``e0`` is (B, F, 6, dim) and each frame's tokens get their own
modulation. The only extras are an optional boolean self-attention mask (block-causal training) and explicit
frame positions for RoPE.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

DTYPE = torch.float64


# ----------------------------------------------------------------------------------------------- primitives
def sinusoidal_embedding_1d(dim: int, position: Tensor) -> Tensor:
    """Upstream timestep sinusoid: (N,) -> (N, dim), cos half first then sin, frequencies 10000^(-i/half)."""
    assert dim % 2 == 0
    half = dim // 2
    position = position.to(DTYPE)
    sinusoid = torch.outer(position, torch.pow(10000.0, -torch.arange(half, dtype=DTYPE).div(half)))
    return torch.cat([torch.cos(sinusoid), torch.sin(sinusoid)], dim=1)


def linear(x: Tensor, sd: dict[str, Tensor], prefix: str) -> Tensor:
    """``x @ W.T + b`` with the ``prefix.weight`` / ``prefix.bias`` entries of the state dict."""
    return x @ sd[f"{prefix}.weight"].T + sd[f"{prefix}.bias"]


def gelu_tanh(x: Tensor) -> Tensor:
    """GELU, tanh approximation, written out."""
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def silu(x: Tensor) -> Tensor:
    """x * sigmoid(x)."""
    return x / (1.0 + torch.exp(-x))


def layer_norm(x: Tensor, eps: float, weight: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
    """LayerNorm over the last dim (biased variance), optional affine."""
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    y = (x - mu) / torch.sqrt(var + eps)
    if weight is not None:
        y = y * weight + bias
    return y


def rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    """RMSNorm over the last dim (the full model width, before the head split) with a learned weight."""
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None) -> Tensor:
    """Softmax attention written out. q (B, Lq, N, D), k/v (B, Lk, N, D); mask (Lq, Lk) True = visible."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    logits = torch.einsum("bqnd,bknd->bnqk", q, k) * scale
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    logits = logits - logits.amax(-1, keepdim=True)
    p = torch.exp(logits)
    p = p / p.sum(-1, keepdim=True)
    return torch.einsum("bnqk,bknd->bqnd", p, v)


# ---------------------------------------------------------------------------------------------------- RoPE
def rope_params(max_seq_len: int, dim: int, theta: float = 10000.0) -> Tensor:
    """Upstream ``rope_params``: (max_seq_len, dim/2) complex128 table ``polar(1, pos * theta^(-2j/dim))``."""
    assert dim % 2 == 0
    freqs = torch.outer(
        torch.arange(max_seq_len, dtype=DTYPE), 1.0 / torch.pow(theta, torch.arange(0, dim, 2, dtype=DTYPE).div(dim))
    )
    return torch.polar(torch.ones_like(freqs), freqs)


def rope_tables(head_dim: int, theta: float = 10000.0, max_seq_len: int = 1024) -> Tensor:
    """The three axis tables concatenated along pairs: (max_seq_len, head_dim/2) complex128.

    Axis head dims are ``d - 4*(d//6)`` (frames), ``2*(d//6)`` (rows), ``2*(d//6)`` (columns).
    """
    d = head_dim
    return torch.cat(
        [
            rope_params(max_seq_len, d - 4 * (d // 6), theta),
            rope_params(max_seq_len, 2 * (d // 6), theta),
            rope_params(max_seq_len, 2 * (d // 6), theta),
        ],
        dim=1,
    )


def rope_apply(x: Tensor, grid: tuple[int, int, int], freqs: Tensor, frame_pos: Tensor | None = None) -> Tensor:
    """Upstream ``rope_apply`` in complex128: rotate adjacent channel pairs of x (B, L, N, D).

    Tokens are ordered (frame, row, column) with L = f*h*w. Frame ``i`` uses temporal position ``frame_pos[i]``
    (default ``i``), rows and columns use their index.
    """
    b, seq_len, n, d = x.shape
    c = d // 2
    f, h, w = grid
    assert seq_len == f * h * w
    fr, fh, fw = freqs.split([c - 2 * (c // 3), c // 3, c // 3], dim=1)
    if frame_pos is None:
        frame_pos = torch.arange(f)
    ft = fr[frame_pos.long()]
    freqs_i = torch.cat(
        [
            ft.view(f, 1, 1, -1).expand(f, h, w, -1),
            fh[:h].view(1, h, 1, -1).expand(f, h, w, -1),
            fw[:w].view(1, 1, w, -1).expand(f, h, w, -1),
        ],
        dim=-1,
    ).reshape(seq_len, 1, -1)
    out = []
    for i in range(b):
        x_i = torch.view_as_complex(x[i].to(DTYPE).reshape(seq_len, n, -1, 2))
        out.append(torch.view_as_real(x_i * freqs_i).flatten(2))
    return torch.stack(out)


def block_causal_mask(num_frames: int, tokens_per_frame: int, chunk_frames: int) -> Tensor:
    """(L, L) bool: query token sees key token iff key's chunk <= query's chunk (chunks of ``chunk_frames``)."""
    chunk = torch.tensor([fi // chunk_frames for fi in range(num_frames) for _ in range(tokens_per_frame)])
    return chunk.view(1, -1) <= chunk.view(-1, 1)


# --------------------------------------------------------------------------------------------------- model
def wan_forward(
    sd: dict[str, Tensor],
    cfg,
    latents: Tensor,
    timesteps: Tensor,
    text: Tensor,
    *,
    chunk_frames: int | None = None,
) -> Tensor:
    """Flow prediction of the Wan2.1 T2V DiT, float64.

    Args:
        sd: ``WanModel.state_dict()`` (official key names), any float dtype.
        cfg: the architecture (reads dim, num_heads, text_len, patch_size, eps, rope_theta, out_channels,
            num_layers, freq_dim).
        latents: (B, C, F, H, W).
        timesteps: (B,) or (B, F) in [0, 1000].
        text: (B, L, text_dim) raw text-encoder states, L <= text_len.
        chunk_frames: None for bidirectional self-attention; otherwise block-causal with chunks of this many
            latent frames.

    Returns:
        (B, C_out, F, H, W) float64.
    """
    sd = {k: v.detach().to(DTYPE) for k, v in sd.items()}
    dim, n = cfg.dim, cfg.num_heads
    d = dim // n
    pt, ph, pw = cfg.patch_size
    eps = cfg.eps
    b, _, frames, hh, ww = latents.shape

    # patch embedding: Conv3d, kernel = stride = patch
    x = F.conv3d(latents.to(DTYPE), sd["patch_embedding.weight"], sd["patch_embedding.bias"], stride=cfg.patch_size)
    grid = tuple(x.shape[2:])
    f_tok, h_tok, w_tok = grid
    x = x.flatten(2).transpose(1, 2)  # (B, L, dim), tokens (frame, row, column)
    seq_len = x.shape[1]
    tpf = h_tok * w_tok

    # time embedding, one timestep per latent frame; one per temporal token (first frame of each temporal patch)
    t = timesteps.to(DTYPE)
    if t.ndim == 1:
        t = t[:, None].expand(b, frames)
    t = t[:, ::pt]
    sin = sinusoidal_embedding_1d(cfg.freq_dim, t.reshape(-1))
    e = linear(silu(linear(sin, sd, "time_embedding.0")), sd, "time_embedding.2")  # (B*F', dim)
    e0 = linear(silu(e), sd, "time_projection.1").view(b, f_tok, 6, dim)
    e = e.view(b, f_tok, dim)

    # text: zero-pad to text_len rows, Linear, GELU(tanh), Linear
    lt = text.shape[1]
    assert lt <= cfg.text_len
    context = torch.cat([text.to(DTYPE), text.new_zeros(b, cfg.text_len - lt, text.shape[2]).to(DTYPE)], dim=1)
    context = linear(gelu_tanh(linear(context, sd, "text_embedding.0")), sd, "text_embedding.2")

    freqs = rope_tables(d, cfg.rope_theta)
    mask = None if chunk_frames is None else block_causal_mask(f_tok, tpf, chunk_frames // pt)

    def per_frame(m: Tensor) -> Tensor:
        """(B, F', dim) -> (B, L, dim): every token of a frame gets that frame's vector."""
        return m.repeat_interleave(tpf, dim=1)

    for i in range(cfg.num_layers):
        p = f"blocks.{i}"
        mod = sd[f"{p}.modulation"] + e0  # (B, F', 6, dim)
        shift1, scale1, gate1, shift2, scale2, gate2 = (per_frame(mod[:, :, j]) for j in range(6))

        # self-attention
        y = layer_norm(x, eps) * (1 + scale1) + shift1
        q = rms_norm(linear(y, sd, f"{p}.self_attn.q"), sd[f"{p}.self_attn.norm_q.weight"], eps).view(b, seq_len, n, d)
        k = rms_norm(linear(y, sd, f"{p}.self_attn.k"), sd[f"{p}.self_attn.norm_k.weight"], eps).view(b, seq_len, n, d)
        v = linear(y, sd, f"{p}.self_attn.v").view(b, seq_len, n, d)
        a = attention(rope_apply(q, grid, freqs), rope_apply(k, grid, freqs), v, mask)
        x = x + linear(a.flatten(2), sd, f"{p}.self_attn.o") * gate1

        # cross-attention on norm3(x), no mask over the padded text rows
        y = layer_norm(x, eps, sd[f"{p}.norm3.weight"], sd[f"{p}.norm3.bias"])
        q = rms_norm(linear(y, sd, f"{p}.cross_attn.q"), sd[f"{p}.cross_attn.norm_q.weight"], eps).view(b, -1, n, d)
        k = rms_norm(linear(context, sd, f"{p}.cross_attn.k"), sd[f"{p}.cross_attn.norm_k.weight"], eps)
        v = linear(context, sd, f"{p}.cross_attn.v")
        a = attention(q, k.view(b, -1, n, d), v.view(b, -1, n, d))
        x = x + linear(a.flatten(2), sd, f"{p}.cross_attn.o")

        # feed-forward
        y = layer_norm(x, eps) * (1 + scale2) + shift2
        y = linear(gelu_tanh(linear(y, sd, f"{p}.ffn.0")), sd, f"{p}.ffn.2")
        x = x + y * gate2

    # head: head.modulation + e (not e0) -> shift, scale
    hm = sd["head.modulation"] + e[:, :, None, :]  # (B, F', 2, dim)
    shift, scale = per_frame(hm[:, :, 0]), per_frame(hm[:, :, 1])
    x = linear(layer_norm(x, eps) * (1 + scale) + shift, sd, "head.head")  # (B, L, pt*ph*pw*c)

    # unpatchify: outputs ordered (pt, ph, pw, c), channel fastest
    c = cfg.out_channels
    u = x.view(b, f_tok, h_tok, w_tok, pt, ph, pw, c)
    u = torch.einsum("bfhwpqrc->bcfphqwr", u)
    return u.reshape(b, c, f_tok * pt, h_tok * ph, w_tok * pw)
