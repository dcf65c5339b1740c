"""MemoryConfig validation and presets."""

from __future__ import annotations

import pytest

from context_forcing_core.memory.config import MEMORY_BOUNDS, PRESETS, MemoryConfig, memory_preset


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"cache_frames": 20}, "does not fit the cache of 20"),
        ({"tau": 1.5}, r"\[-1, 1\]"),
        ({"tau": -1.01}, r"\[-1, 1\]"),
        ({"chunk_frames": 0}, r"chunk_frames must lie in \[1, 16\], got 0"),
        ({"sink_frames": -1}, r"sink_frames must lie in \[0, 64\], got -1"),
        ({"sink_frames": 1_000_000}, r"sink_frames must lie in \[0, 64\], got 1000000"),
        ({"slow_frames": 10**9}, r"slow_frames must lie in \[0, 256\]"),
        ({"sink_frames": 2.5}, "sink_frames must be an integer"),
        ({"sink_frames": "3"}, r"sink_frames must be an integer in \[0, 64\], got '3' \(str\)"),
        ({"tau": float("nan")}, r"tau is a cosine similarity .*got nan"),
        ({"tau": float("inf")}, r"tau is a cosine similarity"),
        ({"fast_frames": 2}, "at least chunk_frames"),
        ({"consolidate_every": 0}, r"consolidate_every must lie in \[1, 64\]"),
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


def test_bounds_refuse_nan_infinities_and_non_numbers_and_accept_their_ends():
    bound = MEMORY_BOUNDS["tau"]
    for bad in (float("nan"), float("inf"), -float("inf"), "0.5", None, True):
        with pytest.raises(ValueError, match=r"tau must"):
            bound.check("tau", bad)
    bound.check("tau", -1.0)
    bound.check("tau", 1.0)
    assert MemoryConfig(sink_frames=64, slow_frames=256, fast_frames=256).capacity == 576
