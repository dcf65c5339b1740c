"""Explicit per-layer cache state: frame slots holding raw (un-rotated) keys and values, and their records.

A slot holds one latent frame's K/V. Its record says which source frame it holds, its role (sink, slow, fast)
and whether the K/V came from the clean t = 0 pass. RoPE positions are not stored: the position rule assigns
them at attention time (keys are cached before RoPE).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import torch
from torch import Tensor


class Role(enum.Enum):
    """Part of the Slow-Fast Memory a cached frame belongs to."""

    SINK = "sink"
    SLOW = "slow"
    FAST = "fast"


ROLE_ORDER = {Role.SINK: 0, Role.SLOW: 1, Role.FAST: 2}


@dataclass(slots=True)
class Slot:
    """Record of one occupied slot."""

    frame: int
    """Source latent frame index in the video."""
    role: Role
    """Sink, slow or fast memory."""
    clean: bool
    """True when the K/V were written by the clean (t = 0) pass."""
    keep: bool = False
    """Marked for slow memory: promoted instead of evicted when it leaves the fast window."""


@dataclass(kw_only=True, slots=True)
class LayerCache:
    """One transformer layer's cached frames.

    ``k`` and ``v`` are (B, capacity, N, H, D): N tokens per frame, H heads of width D; ``slots[i]`` describes
    row i (None = free). Capacity is fixed for bounded policies and doubles on demand for unbounded ones.
    """

    k: Tensor | None = None
    v: Tensor | None = None
    slots: list[Slot | None] = field(default_factory=list)
    growable: bool = False
    """Whether the capacity may grow (unbounded policies)."""
    prev_summary: Tensor | None = None
    """(B, H * D) key summary of the last committed chunk (surprisal reference "previous")."""
    anchor_summary: Tensor | None = None
    """(B, H * D) key summary of the last consolidated chunk (reference "last_consolidated")."""
    rotated: Tensor | None = None
    """(B, capacity, N, H, D) keys rotated to the pending chunk's positions (the in-place read path's buffer)."""

    def occupied(self) -> list[int]:
        """Indices of occupied slots, ordered sink, slow, fast, each oldest first."""
        used = [i for i, s in enumerate(self.slots) if s is not None]
        return sorted(used, key=lambda i: (ROLE_ORDER[self.slots[i].role], self.slots[i].frame))

    def frames(self, role: Role | None = None) -> list[int]:
        """Source frames held (optionally of one role), oldest first."""
        return sorted(s.frame for s in self.slots if s is not None and (role is None or s.role == role))

    def slot_of(self, frame: int) -> int:
        """Slot index holding ``frame``."""
        for i, s in enumerate(self.slots):
            if s is not None and s.frame == frame:
                return i
        raise KeyError(f"frame {frame} is not cached")

    def nbytes(self) -> int:
        """Bytes of K and V held by occupied slots."""
        if self.k is None:
            return 0
        per_slot = self.k[:, 0].numel() * self.k.element_size() * 2
        return per_slot * sum(s is not None for s in self.slots)


def allocate(cache: LayerCache, capacity: int, like: Tensor, growable: bool) -> None:
    """Give an empty cache ``capacity`` slots shaped like one frame of ``like`` (B, f, N, H, D)."""
    b, _, n, h, d = like.shape
    cache.k = like.new_zeros(b, capacity, n, h, d)
    cache.v = like.new_zeros(b, capacity, n, h, d)
    cache.slots = [None] * capacity
    cache.growable = growable


def _grow(cache: LayerCache, need: int) -> None:
    cap = len(cache.slots)
    new_cap = max(2 * cap, cap + need)
    pad = (0, 0, 0, 0, 0, 0, 0, new_cap - cap)
    cache.k = torch.nn.functional.pad(cache.k, pad)
    cache.v = torch.nn.functional.pad(cache.v, pad)
    cache.slots.extend([None] * (new_cap - cap))


def reserve(cache: LayerCache, slots: int) -> None:
    """Make room for ``slots`` slots in all: a growable cache grows as :func:`write_frames` would; a full bounded
    cache is an error.
    """
    if len(cache.slots) >= slots:
        return
    if not cache.growable:
        raise RuntimeError(f"cache full: {slots} slots needed, capacity {len(cache.slots)}")
    _grow(cache, slots - len(cache.slots))


def write_frames(
    cache: LayerCache, frames: list[int], k: Tensor, v: Tensor, roles: list[Role], *, keep_grad: bool
) -> None:
    """Store the K/V of ``frames`` in free slots.

    Args:
        cache: the layer's cache (already allocated).
        frames: source frame indices, one per entry of dim 1 of ``k``.
        k, v: (B, f, N, H, D) raw keys and values from the clean pass.
        roles: role of each frame.
        keep_grad: keep autograd history (writes out of place); otherwise the cache holds detached copies,
            so no gradient can flow into or leak through an earlier chunk.

    """
    held = set(cache.frames())
    if held & set(frames):
        raise ValueError(f"frames {sorted(held & set(frames))} are already cached")
    free = [i for i, s in enumerate(cache.slots) if s is None]
    if len(free) < len(frames):
        if not cache.growable:
            raise RuntimeError(f"cache full: {len(frames)} frames to write, {len(free)} free slots")
        _grow(cache, len(frames) - len(free))
        free = [i for i, s in enumerate(cache.slots) if s is None]
    first = free[0]
    if free[: len(frames)] == list(range(first, first + len(frames))):  # a run of slots: slice writes, no index
        end = first + len(frames)
        if keep_grad:
            cache.k = cache.k.slice_scatter(k.to(cache.k.dtype), dim=1, start=first, end=end)
            cache.v = cache.v.slice_scatter(v.to(cache.v.dtype), dim=1, start=first, end=end)
        else:
            with torch.no_grad():
                cache.k[:, first:end].copy_(k.detach())
                cache.v[:, first:end].copy_(v.detach())
    else:
        idx = torch.tensor(free[: len(frames)], device=k.device)
        if keep_grad:
            cache.k = cache.k.index_copy(1, idx, k.to(cache.k.dtype))
            cache.v = cache.v.index_copy(1, idx, v.to(cache.v.dtype))
        else:
            with torch.no_grad():
                cache.k.index_copy_(1, idx, k.detach().to(cache.k.dtype))
                cache.v.index_copy_(1, idx, v.detach().to(cache.v.dtype))
    for i, f, r in zip(free, frames, roles):
        cache.slots[i] = Slot(frame=f, role=r, clean=True)


def evict(cache: LayerCache, frame: int) -> None:
    """Free the slot holding ``frame`` (its K/V become unreachable)."""
    cache.slots[cache.slot_of(frame)] = None


def promote(cache: LayerCache, frame: int) -> None:
    """Move a fast frame into slow memory (no copy: only its record changes)."""
    slot = cache.slots[cache.slot_of(frame)]
    if slot.role != Role.FAST:
        raise ValueError(f"frame {frame} is {slot.role.value}, only fast frames are promoted")
    slot.role = Role.SLOW


def compact(cache: LayerCache, *, keep_grad: bool) -> int:
    """Move the occupied slots to the front in logical order (sink, slow, fast, each oldest first); free slots follow.

    Between chunks the layout only loses frames (eviction) and relabels them (promotion), so the occupied slots are
    already in logical order with holes, and compaction moves runs of slots towards the front with slice copies (no
    index tensor). Any other order (which no memory operation produces) is reordered with one gather. With
    ``keep_grad`` (the cache carries autograd history) the buffers are rewritten out of place.

    Returns:
        Slots moved.

    """
    order = cache.occupied()
    if order == list(range(len(order))):
        return 0
    if keep_grad or any(b <= a for a, b in zip(order, order[1:])):
        idx = torch.tensor(order, device=cache.k.device)
        n = len(order)
        if keep_grad:
            cache.k = cache.k.slice_scatter(cache.k.index_select(1, idx), dim=1, start=0, end=n)
            cache.v = cache.v.slice_scatter(cache.v.index_select(1, idx), dim=1, start=0, end=n)
        else:
            cache.k[:, :n] = cache.k.index_select(1, idx)
            cache.v[:, :n] = cache.v.index_select(1, idx)
    else:  # ascending sources: every move goes to the front, copy runs front to back
        j = 0
        while j < len(order):
            src, run = order[j], 1
            while j + run < len(order) and order[j + run] == src + run:
                run += 1
            shift = src - j
            if shift:
                for a in range(0, run, shift):  # pieces of at most `shift` slots: source and target never overlap
                    b = min(run, a + shift)
                    cache.k[:, j + a:j + b].copy_(cache.k[:, src + a:src + b])
                    cache.v[:, j + a:j + b].copy_(cache.v[:, src + a:src + b])
            j += run
    slots = [cache.slots[i] for i in order]
    cache.slots = slots + [None] * (len(cache.slots) - len(slots))
    return sum(i != j for j, i in enumerate(order))


def gather(cache: LayerCache, *, copy: bool = False) -> tuple[Tensor | None, Tensor | None, list[Slot]]:
    """Cached K/V of occupied slots, sink then slow then fast, each oldest first.

    Args:
        cache: the layer's cache.
        copy: always return tensors of their own. By default a contiguous prefix of slots comes back as a view of
            the cache buffers, which a later :func:`write_frames` (an in-place write) changes; a copy is a snapshot
            that no later cache operation can alter.

    Returns:
        k, v: (B, n * N, H, D), or None when nothing is cached; and the n slot records in the same order.

    """
    order = cache.occupied()
    if not order:
        return None, None, []
    if order == list(range(len(order))):  # contiguous prefix in age order: a view, no copy
        k, v = cache.k[:, : len(order)], cache.v[:, : len(order)]
        if copy:
            k, v = k.clone(), v.clone()
    else:
        idx = torch.tensor(order, device=cache.k.device)
        k, v = cache.k.index_select(1, idx), cache.v.index_select(1, idx)
    return k.flatten(1, 2), v.flatten(1, 2), [cache.slots[i] for i in order]
