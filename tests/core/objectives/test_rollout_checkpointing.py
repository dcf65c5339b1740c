"""Gradient checkpointing through the Slow-Fast Memory: recomputation in backward must see what the forward saw.

The hazard (docs/method.md section 7): a target chunk's block re-runs in backward, after later chunks have rewritten the
cache in place (``write_frames`` uses ``index_copy_``) and the memory has moved on. The memory context keeps a
snapshot of what each gradient-recording pass read; these tests check the gradients against a run that stores
activations (no recomputation at all), and show that a reader without the snapshot goes wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from conftest import random_model

from context_forcing_core.diffusion.sampler import generate_chunk
from context_forcing_core.diffusion.schedule import DEFAULT_STEPS, warp_timesteps
from context_forcing_core.memory.config import context_forcing, longlive
from context_forcing_core.memory.slow_fast import SlowFastMemory
from context_forcing_core.objectives.rollout import self_rollout


@dataclass
class LiveReader:
    """A memory context without the snapshot: every call (recomputations included) reads the cache as it is now."""

    memory: SlowFastMemory
    commit: bool = False

    def attend(self, layer, q, k, v, grid):
        out = self.memory.read(layer, grid, q.device).attend(q, k, v)
        if self.commit:
            self.memory.write(layer, k, v, grid)
        return out


def rollout_grads(checkpointing: bool, memory, frames: int, target: int) -> list[torch.Tensor]:
    """Parameter gradients of sum(target latents ** 2) of a micro-model rollout with several target chunks."""
    model = random_model().train().enable_gradient_checkpointing(checkpointing)
    text = torch.randn(1, 3, model.config.text_dim, generator=torch.Generator().manual_seed(7))
    rollout = self_rollout(model, text, num_latent_frames=frames, target_frames=target, exit_step=1,
                           generator=torch.Generator().manual_seed(11), memory=memory, latent_size=(4, 4))
    recomputed = []
    for block in model.blocks:  # a pre-hook: recomputation stops early, before forward hooks would run
        block.register_forward_pre_hook(lambda *_: recomputed.append(1))
    rollout.latents[:, :, rollout.target_start:].square().sum().backward()
    expected = len(model.blocks) * target // memory.chunk_frames if checkpointing else 0
    assert len(recomputed) == expected, "each target chunk's gradient pass re-runs every block in backward"
    return [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize(("memory", "frames", "target"), [(longlive(), 18, 12), (context_forcing(), 30, 18)],
                         ids=["longlive", "context_forcing"])
def test_checkpointed_rollout_has_the_same_parameter_gradients(memory, frames, target):
    # longlive holds 12 frames and context_forcing 21: both rollouts evict and overwrite slots in place while
    # target chunks still await their backward
    reference = rollout_grads(False, memory, frames, target)
    checkpointed = rollout_grads(True, memory, frames, target)
    assert sum(g.abs().sum() for g in reference) > 0
    for g_ref, g in zip(reference, checkpointed, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=1e-6, atol=1e-9)


def test_a_reader_without_snapshot_breaks_the_checkpointed_rollout(monkeypatch):
    monkeypatch.setattr(SlowFastMemory, "attention", lambda self, commit=False: LiveReader(self, commit))
    with pytest.raises(RuntimeError, match="no pending chunk"):  # the memory moved on: recomputation has no chunk
        rollout_grads(True, longlive(), 18, 12)


def mid_rollout_grads(checkpointing: bool, reader) -> list[torch.Tensor]:
    """Backward while the next chunk is pending: the live cache then holds a valid but different history."""
    model = random_model().train().enable_gradient_checkpointing(checkpointing)
    g = torch.Generator().manual_seed(2)
    text = model.encode_text(torch.randn(1, 3, model.config.text_dim, generator=g))
    mem, timesteps = SlowFastMemory(longlive(), model.config), warp_timesteps(DEFAULT_STEPS, 5.0)
    with torch.no_grad():
        for c in range(4):  # fills the 12-frame cache
            generate_chunk(model, mem, text, range(3 * c, 3 * c + 3), timesteps, latent_size=(4, 4), generator=g)
    x = torch.randn(1, model.config.in_channels, 3, 4, 4, generator=g)
    t = torch.full((1, 3), 500.0)
    mem.begin_chunk(range(12, 15))
    loss = model(x, t, text, attention=reader(mem)).square().sum()  # reads the cache with gradient
    with torch.no_grad():
        model(x, t * 0, text, attention=reader(mem, commit=True))  # commits in place
    mem.end_chunk()
    mem.begin_chunk(range(15, 18))  # evicts and shifts positions: another cache, another chunk
    loss.backward()
    return [p.grad.clone() for p in model.parameters()]


def test_without_snapshot_recomputation_silently_changes_the_gradient():
    reference = mid_rollout_grads(False, LiveReader)
    naive = mid_rollout_grads(True, LiveReader)
    protected = mid_rollout_grads(True, lambda mem, commit=False: mem.attention(commit=commit))
    for g_ref, g in zip(reference, protected, strict=True):
        torch.testing.assert_close(g, g_ref, rtol=1e-6, atol=1e-9)
    rel = max(float((g - g_ref).norm() / g_ref.norm()) for g_ref, g in zip(reference, naive) if g_ref.norm() > 0)
    assert rel > 1e-3, "the live reader recomputes against the next chunk's memory without any error"
