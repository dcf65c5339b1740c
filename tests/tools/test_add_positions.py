"""tools.add_positions: a zero position table leaves the model's outputs unchanged, and the file reloads with it."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from context_forcing_core.models.config import toy
from context_forcing_core.models.loading import load_model, save_model
from tests.conftest import random_model
from tools.add_positions import add_positions, main


def test_zero_table_keeps_outputs_and_a_nonzero_one_changes_them(tmp_path):
    old = random_model(dataclasses.replace(toy(), position_grid=None, dim=64, ffn_dim=64, text_dim=32))
    save_model(old, tmp_path / "old.safetensors")
    main([str(tmp_path / "old.safetensors"), str(tmp_path / "new.safetensors")])
    new = load_model(tmp_path / "new.safetensors")
    assert new.config.position_grid == toy().position_grid and not new.pos_embedding.detach().any()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 48, 3, 8, 8, generator=gen)
    t = torch.full((1, 3), 500.0)
    text = new.encode_text(torch.randn(1, 16, 32, generator=gen))
    torch.testing.assert_close(new(x, t, text, attention="block_causal"), old(x, t, text, attention="block_causal"))
    with torch.no_grad():
        new.pos_embedding.normal_()
    assert not torch.allclose(new(x, t, text, attention="block_causal"), old(x, t, text, attention="block_causal"))
    with pytest.raises(ValueError, match="already has learned positions"):
        add_positions(new, (4, 4))
