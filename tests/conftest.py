"""Shared fixtures: tiny random-weight models on CPU."""

from __future__ import annotations

import pytest
import torch

from context_forcing_core.models.config import micro
from context_forcing_core.models.wan import WanModel


def random_model(cfg=None, seed: int = 0) -> WanModel:
    """A float32 model whose every parameter is random (norm weights and biases included), in eval mode."""
    torch.manual_seed(seed)
    model = WanModel(cfg or micro()).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture(autouse=True)
def _one_thread():
    """Test models are tiny: intra-op threads only add overhead (and stall badly on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def model() -> WanModel:
    """The micro model (2 layers, dim 32, 4 latent channels)."""
    return random_model()
