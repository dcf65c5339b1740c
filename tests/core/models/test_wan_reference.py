"""WanModel (float32) against the independent float64 reference in ``reference_wan``.

Tolerances: the model runs in float32 (unit roundoff 6e-8). Through 2 blocks of O(1) activations, dot products
over up to a few hundred terms and softmaxes, the accumulated error measured here is ~1e-6..1e-5 on outputs
whose mean |value| is O(1) (checked in each test, so the comparison is not vacuous). We assert 1e-4 absolute,
which is ~10x the expected float32 noise but far below what any structural mistake produces (a wrong
modulation slot, RoPE pairing, missing padding, wrong unpatchify order or mask all give O(0.1..1) errors).
"""

from __future__ import annotations

import pytest
import torch
from conftest import random_model
from reference_wan import wan_forward

from context_forcing_core.models.config import micro, tiny

ATOL = 1e-4


def _inputs(cfg, seed: int, b: int = 2, f: int = 6, h: int = 6, w: int = 8, lt: int | None = None):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, cfg.in_channels, f, h, w, generator=g)
    text = torch.randn(b, cfg.text_len if lt is None else lt, cfg.text_dim, generator=g)
    return x, text


def _compare(model, x, t, text, chunk_frames=None) -> tuple[float, float]:
    with torch.no_grad():
        attention = "bidirectional" if chunk_frames is None else "block_causal"
        out = model(x, t, text, attention=attention, chunk_frames=chunk_frames or 3)
        ref = wan_forward(model.state_dict(), model.config, x, t, text, chunk_frames=chunk_frames)
    assert out.dtype == torch.float32
    assert out.shape == ref.shape == (x.shape[0], model.config.out_channels, *x.shape[2:])
    err = (out.double() - ref).abs().max().item()
    scale = ref.abs().mean().item()
    assert scale > 0.1, f"degenerate output (mean |ref| = {scale})"
    assert err < ATOL, f"max |model - reference| = {err:.3g} (mean |ref| = {scale:.3g})"
    return err, scale


CFGS = [pytest.param(tiny, id="tiny"), pytest.param(micro, id="micro")]


@pytest.mark.parametrize("make_cfg", CFGS)
def test_bidirectional_scalar_timestep(make_cfg):
    model = random_model(make_cfg(), seed=0)
    x, text = _inputs(model.config, seed=1)
    t = torch.tensor([937.0, 250.5])
    _compare(model, x, t, text)


@pytest.mark.parametrize("make_cfg", CFGS)
def test_bidirectional_per_frame_timesteps(make_cfg):
    model = random_model(make_cfg(), seed=2)
    x, text = _inputs(model.config, seed=3)
    t = torch.tensor([[999.0, 800.0, 610.5, 400.0, 150.0, 0.0], [3.0, 500.0, 20.0, 990.0, 250.0, 750.0]])
    _compare(model, x, t, text)
    # per-frame timesteps must actually matter: the same model with a scalar t gives a different answer
    with torch.no_grad():
        a = model(x, t, text)
        b = model(x, t[:, :1].expand(-1, 6).contiguous(), text)
    assert (a - b).abs().max().item() > 1e-2


@pytest.mark.parametrize("make_cfg", CFGS)
def test_block_causal_matches_masked_reference(make_cfg):
    model = random_model(make_cfg(), seed=4)
    x, text = _inputs(model.config, seed=5, f=9)
    t = torch.rand(2, 9, generator=torch.Generator().manual_seed(6)) * 1000
    _compare(model, x, t, text, chunk_frames=3)


@pytest.mark.parametrize("make_cfg", CFGS)
def test_short_text_is_zero_padded(make_cfg):
    cfg = make_cfg()
    model = random_model(cfg, seed=7)
    x, text = _inputs(cfg, seed=8, lt=cfg.text_len // 2 - 1)
    t = torch.tensor([500.0, 42.0])
    _compare(model, x, t, text)
    # explicit zero padding is the same input
    padded = torch.cat([text, text.new_zeros(2, cfg.text_len - text.shape[1], cfg.text_dim)], dim=1)
    with torch.no_grad():
        assert (model(x, t, text) - model(x, t, padded)).abs().max().item() < 1e-6


def test_reference_padding_rows_are_attended():
    """Sanity of the reference itself: padded rows (non-zero after the text bias) change the output."""
    cfg = micro()
    model = random_model(cfg, seed=9)
    x, text = _inputs(cfg, seed=10, lt=cfg.text_len)
    t = torch.tensor([300.0, 700.0])
    sd = model.state_dict()
    full = wan_forward(sd, cfg, x, t, text)
    short = wan_forward(sd, cfg, x, t, text[:, :1])
    assert (full - short).abs().max().item() > 1e-2


def test_block_causal_first_chunk_equals_chunk_alone():
    model = random_model(tiny(), seed=11)
    x, text = _inputs(model.config, seed=12, f=9)
    t = torch.rand(2, 9, generator=torch.Generator().manual_seed(13)) * 1000
    with torch.no_grad():
        causal = model(x, t, text, attention="block_causal", chunk_frames=3)
        alone = model(x[:, :, :3], t[:, :3], text)
        full = model(x, t, text)
    # different sequence lengths change float32 reduction order only: ~1e-6
    assert (causal[:, :, :3] - alone).abs().max().item() < 1e-5
    # and bidirectional attention over the whole clip is genuinely different (the mask matters)
    assert (full[:, :, :3] - alone).abs().max().item() > 1e-2


def test_block_causal_earlier_chunks_ignore_later_frames():
    model = random_model(tiny(), seed=14)
    x, text = _inputs(model.config, seed=15, f=9)
    t = torch.rand(2, 9, generator=torch.Generator().manual_seed(16)) * 1000
    x2 = x.clone()
    x2[:, :, 6:] = torch.randn(x2[:, :, 6:].shape, generator=torch.Generator().manual_seed(17))
    t2 = t.clone()
    t2[:, 6:] = 123.0
    with torch.no_grad():
        a = model(x, t, text, attention="block_causal", chunk_frames=3)
        b = model(x2, t2, text, attention="block_causal", chunk_frames=3)
    # masked keys get exactly zero weight, so earlier chunks are unchanged up to float32 noise at most
    assert (a[:, :, :6] - b[:, :, :6]).abs().max().item() < 1e-6
    assert (a[:, :, 6:] - b[:, :, 6:]).abs().max().item() > 1e-2
