"""MemoryConfig validation and presets."""

from __future__ import annotations

import pytest

from context_forcing_core.memory.config import PRESETS, MemoryConfig, memory_preset


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"cache_frames": 20}, "does not fit the cache of 20"),
        ({"tau": 1.5}, r"\[-1, 1\]"),
        ({"tau": -1.01}, r"\[-1, 1\]"),
        ({"chunk_frames": 0}, "chunk_frames must be positive"),
        ({"sink_frames": -1}, "sink_frames must be non-negative"),
        ({"fast_frames": 2}, "at least chunk_frames"),
        ({"consolidate_every": 0}, "consolidate_every must be positive"),
        ({"keep_frames": 4}, "cannot exceed chunk_frames"),
        ({"positions": "rotary"}, "allowed: bounded, absolute, slot"),
        ({"slow_select": "random"}, "allowed: surprisal, uniform, none"),
        ({"similarity_reference": "first"}, "allowed: previous, last_consolidated"),
        ({"slow_frames": 0}, "needs slow_frames > 0"),
        ({"fast_frames": None}, "fast_frames=None"),
    ],
)
def test_invalid_configs_say_what_is_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MemoryConfig(**kwargs)


def test_context_forcing_defaults_match_the_paper():
    cfg = memory_preset("context_forcing")
    assert (cfg.sink_frames, cfg.slow_frames, cfg.fast_frames, cfg.capacity) == (3, 12, 6, 21)
    assert (cfg.tau, cfg.consolidate_every, cfg.keep_frames) == (0.95, 2, 1)
    assert cfg.positions == "bounded" and cfg.similarity_reference == "previous"


def test_presets_are_valid_and_unknown_names_list_the_allowed_ones():
    for name in PRESETS:
        assert memory_preset(name) == PRESETS[name]()
    with pytest.raises(ValueError, match="allowed: .*context_forcing"):
        memory_preset("streaming")
