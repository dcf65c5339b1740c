"""RoPE temporal positions of attended frames, assigned at attention time (keys are cached un-rotated)."""

from __future__ import annotations

from .config import MemoryConfig
from .state import Role, Slot


def assign_positions(cfg: MemoryConfig, history: list[Slot], query: list[int]) -> tuple[list[int], list[int]]:
    """Temporal position of every cached frame and of every frame being generated.

    Rules:
        absolute: a frame's index in the video.
        slot: 0..n-1 over sink, slow, fast, then the query, each oldest first (StreamingLLM / Infinity-RoPE:
            once the cache is full the chunk is pinned at the top slots).
        bounded (CF Eq. 8): sink at 0..S-1; slow memory at S, S+1, ... in age order; fast memory and the query
            at the top indices ending at min(capacity, query_end) - 1. Until a frame leaves the fast window this
            equals the absolute index, so the first 21 frames see exactly the positions of a 21-frame clip.
            Every position lies in [0, capacity - 1].

    Args:
        cfg: memory configuration.
        history: records of cached frames, sink then slow then fast, oldest first.
        query: frame indices being generated, ascending.

    Returns:
        (history positions, query positions), aligned with the inputs.

    """
    if cfg.positions == "absolute":
        return [s.frame for s in history], list(query)
    if cfg.positions == "slot":
        n = len(history)
        return list(range(n)), list(range(n, n + len(query)))
    sink = [s for s in history if s.role == Role.SINK]
    slow = [s for s in history if s.role == Role.SLOW]
    fast = [s for s in history if s.role == Role.FAST]
    top = min(cfg.capacity, query[-1] + 1)
    first_fast = top - len(fast) - len(query)
    pos = {id(s): s.frame for s in sink}  # sink frames are the first frames: 0..S-1
    pos.update({id(s): cfg.sink_frames + j for j, s in enumerate(slow)})
    pos.update({id(s): first_fast + j for j, s in enumerate(fast)})
    return [pos[id(s)] for s in history], list(range(first_fast + len(fast), top))
