"""WanConfig presets, validation and JSON round-trip."""

from __future__ import annotations

import pytest

from context_forcing_core.models.config import PRESETS, WanConfig, model_preset


def test_the_1_3b_preset_has_the_published_shape():
    cfg = model_preset("wan2.1-t2v-1.3b")
    assert (cfg.dim, cfg.num_layers, cfg.num_heads, cfg.ffn_dim, cfg.head_dim) == (1536, 30, 12, 8960, 128)
    assert cfg.rope_split == (44, 42, 42)
    assert (cfg.text_dim, cfg.text_len, cfg.patch_size) == (4096, 512, (1, 2, 2))


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_through_json(name):
    cfg = model_preset(name)
    assert WanConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_heads": 7}, "divisible by num_heads"),
        ({"dim": 0}, "dim must be positive"),
        ({"patch_size": (1, 2)}, "three positive ints"),
        ({"dim": 24, "num_heads": 6}, "at least 6"),
        ({"position_grid": (4, 0)}, "position_grid"),
    ],
)
def test_invalid_configs_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        WanConfig(**kwargs)


def test_unknown_names_list_what_is_allowed():
    with pytest.raises(ValueError, match="allowed: .*wan2.1-t2v-1.3b"):
        model_preset("wan2.2")
    with pytest.raises(ValueError, match="unknown WanConfig fields"):
        WanConfig.from_json('{"dim": 64, "depth": 3}')
