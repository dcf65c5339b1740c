"""Configuration of the chunk cache and the named presets (Context Forcing and the baselines it is compared with).

All sizes are in latent frames. Every baseline in ``docs/baselines.md`` is a setting of this one
config: which frames stay attended (sink, slow, fast) and which RoPE position each gets.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Literal

SlowSelect = Literal["surprisal", "uniform", "none"]
PositionRule = Literal["bounded", "absolute", "slot"]
SimilarityReference = Literal["previous", "last_consolidated"]


@dataclass(frozen=True, slots=True)
class Bound:
    """The closed range [low, high] a numeric setting may take: the one source of the core's checks and of the
    ComfyUI widgets' min / max. NaN and infinities are outside every bound.
    """

    low: int | float
    high: int | float
    integer: bool = True
    """Whether the value must be an integer (bool is not accepted as one)."""

    def check(self, name: str, value: object) -> None:
        """Raise ValueError naming ``name``, the value and the allowed range unless ``value`` lies in it."""
        span = f"[{self.low}, {self.high}]"
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            kind = "an integer" if self.integer else "a number"
            raise ValueError(f"{name} must be {kind} in {span}, got {value!r} ({type(value).__name__})")
        if self.integer and not isinstance(value, numbers.Integral):
            raise ValueError(f"{name} must be an integer in {span}, got {value!r}")
        if not math.isfinite(value) or not self.low <= value <= self.high:
            raise ValueError(f"{name} must lie in {span}, got {value!r}")


MEMORY_BOUNDS: dict[str, Bound] = {
    "chunk_frames": Bound(1, 16),
    "sink_frames": Bound(0, 64),
    "slow_frames": Bound(0, 256),
    "fast_frames": Bound(1, 256),
    "cache_frames": Bound(1, 1024),
    "consolidate_every": Bound(1, 64),
    "keep_frames": Bound(1, 16),
    "tau": Bound(-1.0, 1.0, integer=False),
}
"""Allowed values of the numeric MemoryConfig fields (latent frames; tau is a cosine similarity). The caps keep a
single request from asking for more cache than any GPU holds (264 frames of Wan 1.3B at 480p ~ 76 GB in bf16)."""


@dataclass(kw_only=True, slots=True, frozen=True)
class MemoryConfig:
    """What the causal student keeps in its KV cache and where each kept frame sits in RoPE time."""

    chunk_frames: int = 3
    """Latent frames generated per autoregressive step (Wan students: 3)."""
    sink_frames: int = 3
    """Attention sink N_s: the first frames of the video, never evicted."""
    slow_frames: int = 12
    """Slow memory N_c: capacity for consolidated frames; the oldest entry is evicted when full."""
    fast_frames: int | None = 6
    """Fast memory N_l: the most recent frames, counting the chunk being generated. None keeps every frame."""
    cache_frames: int | None = None
    """Attended-frame budget (the RoPE bound is cache_frames - 1); None means sink + slow + fast."""
    slow_select: SlowSelect = "surprisal"
    """How chunks enter slow memory: "surprisal" (CF Eq. 7), "uniform" (every ``consolidate_every`` chunks) or "none"."""
    tau: float = 0.95
    """Surprisal threshold: a chunk whose key similarity to the reference is below tau is consolidated."""
    consolidate_every: int = 2
    """Chunks between consolidation checks (a chunk is checked when its index is a multiple of this)."""
    keep_frames: int = 1
    """Latent frames of a consolidated chunk kept in slow memory (its first ones)."""
    similarity_reference: SimilarityReference = "previous"
    """Compare a chunk with the chunk just before it, or with the last consolidated chunk."""
    positions: PositionRule = "bounded"
    """RoPE time of attended frames: "bounded" (CF Eq. 8), "absolute" (frame index) or "slot" (0..n-1 in age order)."""

    def __post_init__(self) -> None:
        for name, bound in MEMORY_BOUNDS.items():
            value = getattr(self, name)
            if value is None and name in ("fast_frames", "cache_frames"):
                continue
            if name == "tau" and isinstance(value, numbers.Real) and not -1.0 <= value <= 1.0:
                raise ValueError(f"MemoryConfig.tau is a cosine similarity and must lie in [-1, 1], got {value}")
            bound.check(f"MemoryConfig.{name}", value)
        if self.fast_frames is not None and self.fast_frames < self.chunk_frames:
            raise ValueError(
                f"MemoryConfig.fast_frames ({self.fast_frames}) counts the chunk being generated and must be at "
                f"least chunk_frames ({self.chunk_frames}), or None for no eviction"
            )
        if self.fast_frames is None and (self.slow_frames or self.positions == "bounded"):
            raise ValueError("fast_frames=None (keep every frame) needs slow_frames=0 and positions 'absolute' or 'slot'")
        if self.cache_frames is not None:
            if self.fast_frames is None:
                raise ValueError("cache_frames needs a bounded fast memory (fast_frames not None)")
            used = self.sink_frames + self.slow_frames + self.fast_frames
            if self.cache_frames <= 0 or used > self.cache_frames:
                raise ValueError(
                    f"sink + slow + fast = {self.sink_frames} + {self.slow_frames} + {self.fast_frames} = {used} "
                    f"latent frames does not fit the cache of {self.cache_frames}; lower a size or raise cache_frames"
                )
        if self.keep_frames > self.chunk_frames:
            raise ValueError(f"keep_frames ({self.keep_frames}) cannot exceed chunk_frames ({self.chunk_frames})")
        for name, allowed in (
            ("slow_select", ("surprisal", "uniform", "none")),
            ("positions", ("bounded", "absolute", "slot")),
            ("similarity_reference", ("previous", "last_consolidated")),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"MemoryConfig.{name} = {getattr(self, name)!r}; allowed: {', '.join(allowed)}")
        if self.slow_frames == 0 and self.slow_select != "none":
            raise ValueError(f"slow_select={self.slow_select!r} needs slow_frames > 0 (or use slow_select='none')")

    @property
    def bounded(self) -> bool:
        """True when the number of attended frames is capped."""
        return self.fast_frames is not None

    @property
    def capacity(self) -> int | None:
        """Attended frames at most, the current chunk included (None when unbounded)."""
        if self.fast_frames is None:
            return None
        return self.cache_frames or self.sink_frames + self.slow_frames + self.fast_frames

    @property
    def fast_history(self) -> int | None:
        """Fast-memory frames kept from earlier chunks (N_l minus the current chunk)."""
        return None if self.fast_frames is None else self.fast_frames - self.chunk_frames

    def replace(self, **changes: object) -> MemoryConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


def context_forcing() -> MemoryConfig:
    """Context Forcing Slow-Fast Memory: sink 3, slow 12 (surprisal, tau 0.95, every 2 chunks, 1 frame each), fast 6,
    bounded positions [0, 20] (paper Sec. 4, Eq. 7-8).
    """
    return MemoryConfig()


def uniform(every: int = 2) -> MemoryConfig:
    """Context Forcing's layout with slow memory filled every ``every`` chunks instead of by surprisal (paper ablation)."""
    return MemoryConfig(slow_select="uniform", consolidate_every=every)


def self_forcing() -> MemoryConfig:
    """Self-Forcing: a plain rolling window of 21 latent frames at absolute positions."""
    return MemoryConfig(sink_frames=0, slow_frames=0, fast_frames=21, slow_select="none", positions="absolute")


def longlive() -> MemoryConfig:
    """LongLive 1.0: frame sink 3 (first chunk) + recent frames, 12 attended in all, absolute positions."""
    return MemoryConfig(sink_frames=3, slow_frames=0, fast_frames=9, slow_select="none", positions="absolute")


def infinity_rope() -> MemoryConfig:
    """Infinity-RoPE: sink 1 + 2 recent frames + the current chunk, positions by slot (chunk pinned at 3..5)."""
    return MemoryConfig(sink_frames=1, slow_frames=0, fast_frames=5, slow_select="none", positions="slot")


def full() -> MemoryConfig:
    """Keep every frame at its absolute position (no eviction); equals block-causal attention. For tests."""
    return MemoryConfig(sink_frames=0, slow_frames=0, fast_frames=None, slow_select="none", positions="absolute")


PRESETS = {
    "context_forcing": context_forcing,
    "uniform": uniform,
    "self_forcing": self_forcing,
    "longlive": longlive,
    "infinity_rope": infinity_rope,
    "full": full,
}


def memory_preset(name: str) -> MemoryConfig:
    """Return the memory preset called ``name``."""
    if name not in PRESETS:
        raise ValueError(f"unknown memory preset {name!r}; allowed: {sorted(PRESETS)}")
    return PRESETS[name]()
