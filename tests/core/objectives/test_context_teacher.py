from __future__ import annotations

import pytest
import torch

from context_forcing_core.objectives.context_teacher import ContextLayout, assemble, context_indices, erft_step
from context_forcing_core.objectives.erft import ErftConfig, ErrorBank


def test_memory_layout_100_frames_by_hand():
    idx = context_indices(100, ContextLayout())
    slow = [22, 28, 34, 40, 46, 52, 58, 64, 70, 76, 82, 88]
    assert idx == [0, 1, 2] + slow + list(range(94, 100))
    assert len(idx) == 21


def test_memory_layout_fewer_slow_frames_than_capacity():
    idx = context_indices(40, ContextLayout())
    assert idx == [0, 1, 2, 4, 10, 16, 22, 28] + list(range(34, 40))


def test_contiguous_layout():
    assert context_indices(100, ContextLayout(mode="contiguous")) == list(range(79, 100))
    assert context_indices(5, ContextLayout(mode="contiguous")) == list(range(5))


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 8, 9, 10, 15, 21, 22])
@pytest.mark.parametrize("mode", ["memory", "contiguous"])
def test_short_contexts_sorted_without_duplicates(n, mode):
    idx = context_indices(n, ContextLayout(mode=mode))
    assert idx == sorted(set(idx))
    assert all(0 <= i < n for i in idx)
    assert len(idx) <= 21
    if mode == "memory" and n:
        assert idx[: min(3, n)] == list(range(min(3, n)))
        assert idx[-min(6, n) :] == list(range(n - min(6, n), n))


def test_assemble_shapes_mask_timesteps():
    b, c, f, h, w = 2, 3, 40, 2, 2
    latents = torch.arange(f, dtype=torch.float32).reshape(1, 1, f, 1, 1).expand(b, c, f, h, w).clone()
    layout = ContextLayout(slow=2, recent=4, sink=1, slow_stride_frames=5)
    inp = assemble(latents, 10, layout)
    # context = frames 0..29: sink 0, slow 21, 16, recent 26..29
    assert inp.context_frames == [0, 16, 21, 26, 27, 28, 29]
    assert inp.x.shape == (b, c, 7 + 10, h, w)
    assert inp.x[0, 0, :, 0, 0].tolist() == [0, 16, 21, 26, 27, 28, 29] + list(range(30, 40))
    assert inp.frame_mask.tolist() == [False] * 7 + [True] * 10
    ts = inp.timesteps_for(torch.tensor([250.0, 900.0]))
    assert ts.shape == (b, 17)
    assert ts[:, :7].eq(0).all() and ts[0, 7:].eq(250).all() and ts[1, 7:].eq(900).all()
    assert inp.target_slice == slice(7, 17)


def test_assemble_without_context_and_validation():
    latents = torch.randn(1, 2, 21, 2, 2)
    inp = assemble(latents, 21, ContextLayout())
    assert inp.context_frames == [] and torch.equal(inp.x, latents) and inp.frame_mask.all()
    with pytest.raises(ValueError):
        assemble(latents, 22, ContextLayout())
    with pytest.raises(ValueError):
        ContextLayout(mode="dense")


class HalfFlow(torch.nn.Module):
    """flow = x / 2; records its inputs."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, x, t, text):
        self.calls.append((x.clone(), t.clone()))
        return x / 2


def _warm_bank(cfg, error):
    bank = ErrorBank(cfg)
    for b in range(cfg.num_buckets):
        bank.add(error[None], float(bank.timesteps[b]), kind="x0")
    return bank


def test_erft_step_corrupts_inputs_and_regresses_the_clean_target():
    g = torch.Generator().manual_seed(0)
    c, h, w = 2, 2, 2
    latents = torch.randn(3, c, 30, h, w, generator=g)
    error = torch.randn(c, h, w, generator=g)
    cfg = ErftConfig(num_buckets=5, capacity=4, clean_prob=0.0, p_context=1.0, p_target=1.0, p_noise=0.0)
    bank, model = _warm_bank(cfg, error), HalfFlow()
    layout = ContextLayout(sink=1, slow=2, slow_stride_frames=4, recent=2)
    step = erft_step(model, latents, torch.zeros(3, 1, 1), target_frames=6, layout=layout, bank=bank, erft=cfg,
                     generator=g)
    x, t = model.calls[0]
    ref = assemble(latents, 6, layout)
    n_ctx = len(ref.context_frames)
    assert (t[:, :n_ctx] == 0).all() and (t[:, n_ctx:] == t[:, n_ctx:n_ctx + 1]).all()
    # context: the banked error on exactly context_run consecutive frames
    diff = x[:, :, :n_ctx] - ref.x[:, :, :n_ctx]
    hit = diff.abs().flatten(3).sum(-1).sum(1) > 0  # (B, Fc)
    assert (hit.sum(1) == cfg.context_run).all()
    for i in range(3):
        s = int(step.injection.context_start[i])
        torch.testing.assert_close(diff[i, :, s : s + cfg.context_run], error[:, None].expand(c, 3, h, w))
    # target: x_t from target + error; the loss regresses the flow towards eps - clean target
    sigma = (t[:, n_ctx] / 1000).reshape(3, 1, 1, 1, 1)
    target = ref.x[:, :, n_ctx:]
    noise = (x[:, :, n_ctx:] - (1 - sigma) * (target + error[:, None])) / sigma
    expected = (x[:, :, n_ctx:] / 2 - (noise - target)).square().mean()
    torch.testing.assert_close(step.loss, expected, atol=1e-5, rtol=1e-5)
    assert step.banked == 3 and bank.counts("noise") != [0] * cfg.num_buckets


def test_erft_off_feeds_the_clean_clip():
    g = torch.Generator().manual_seed(1)
    latents = torch.randn(2, 2, 12, 2, 2, generator=g)
    cfg = ErftConfig(num_buckets=5, capacity=4, clean_prob=1.0, update_prob_after_clean=0.0)
    bank, model = _warm_bank(cfg, torch.ones(2, 2, 2)), HalfFlow()
    layout = ContextLayout(mode="contiguous", sink=0, slow=0, recent=6)
    step = erft_step(model, latents, torch.zeros(2, 1, 1), target_frames=6, layout=layout, bank=bank, erft=cfg,
                     generator=g)
    x, _ = model.calls[0]
    torch.testing.assert_close(x[:, :, :6], latents[:, :, :6])
    assert not step.injection.context_injected.any() and step.banked == 0
    assert bank.counts("noise") == [0] * cfg.num_buckets
