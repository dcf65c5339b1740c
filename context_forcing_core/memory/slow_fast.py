"""The Slow-Fast Memory: per-layer caches, the chunk protocol, and the attention context that reads them.

Protocol for one chunk (the sampler drives it):
    memory.begin_chunk(frames)                         # positions fixed for this chunk
    model(x_t, t, text, attention=memory.attention())  # denoising passes: read only
    model(x0, 0, text, attention=memory.attention(commit=True))  # clean pass: K/V written
    memory.end_chunk()                                 # consolidate (CF Eq. 7), evict, trace

Each layer's attention reads the memory and the clean pass writes it through :meth:`SlowFastMemory.write`. Two read
paths give the same outputs:
- in place (inference: no autograd, no ``keep_grad``): ``begin_chunk`` compacts each cache so its frames are a
  prefix in logical order; the first pass of a chunk rotates a layer's cached keys once, to the positions fixed for
  the chunk, into the layer's ``rotated`` buffer; every pass rotates only its chunk's queries and keys and writes the
  chunk's K/V behind the history (keys into ``rotated``, values into the cache slots the commit will fill), and
  attention reads views. Per pass: no copy of the history, no gather, no index tensor, no host read.
- read and concatenate (:meth:`SlowFastMemory.read`, :class:`LayerView`): a snapshot of the history and all
  positions' angles, concatenated with the chunk on every pass. Autograd needs it: a gradient-recording pass keeps
  what it read (:class:`MemoryAttention`), so activation checkpointing recomputes against the same K/V even after
  later chunks rewrote the cache. Gradient-recording passes and every pass of a ``keep_grad`` memory share one
  snapshot per layer and chunk (:meth:`SlowFastMemory.shared_view`), whose history keys are rotated once.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from ..models.attention import Grid, sdpa
from ..models.config import WanConfig
from ..models.rope import apply_rope, rope_angles
from .attend import attend_chunk, compiled_attend_chunk
from .config import MemoryConfig
from .positions import assign_positions
from .state import LayerCache, Role, Slot, allocate, compact, evict, gather, promote, reserve, write_frames
from .surprisal import decide, is_checked, key_summary, similarity
from .trace import ChunkStep, LayerStep, MemoryTrace


@dataclass(kw_only=True, slots=True)
class _Pending:
    """State of the chunk between begin_chunk and end_chunk."""

    frames: list[int]
    recache: bool
    history: list[list[Slot]]
    """Per layer, copies of the cached slot records at begin_chunk (sink, slow, fast order)."""
    positions: list[tuple[list[int], list[int]]]
    """Per layer, (history positions, query positions)."""
    summaries: list[Tensor | None]
    """Per layer, key summary of the chunk, set by the commit pass."""
    angles: dict = field(default_factory=dict)
    """RoPE cos/sin memoised by (positions, rows, columns) for this chunk."""
    rotated: set[int] = field(default_factory=set)
    """Layers whose ``rotated`` buffer holds this chunk's rotation of the history."""
    views: dict = field(default_factory=dict)
    """Per (layer, token grid), the snapshot of the history shared by this chunk's read-and-concatenate passes."""


class SlowFastMemory:
    """Bounded KV memory of a causal Wan student: attention sink + slow memory + fast window.

    Args:
        config: sizes, consolidation and position rule.
        model: architecture of the model it serves (layer count, RoPE split).
        keep_grad: keep autograd history in cached K/V. False (default) stores detached copies, so a later
            chunk's loss never reaches an earlier chunk through the cache (docs/method.md section 7).
        compile_attention: run the in-place path's attention core (:func:`~.attend.attend_chunk`) under
            ``torch.compile``.

    """

    def __init__(self, config: MemoryConfig, model: WanConfig, *, keep_grad: bool = False,
                 compile_attention: bool = False) -> None:
        self.config = config
        self.num_layers = num_layers = model.num_layers
        self._rope = (model.rope_split, model.rope_theta)
        self.keep_grad = keep_grad
        self._attend_chunk = compiled_attend_chunk() if compile_attention else attend_chunk
        self.layers = [LayerCache() for _ in range(num_layers)]
        self.trace = MemoryTrace()
        self.next_frame = 0
        self._pending: _Pending | None = None
        self._prev_chunk: list[int | None] = [None] * num_layers
        self._anchor_chunk: list[int | None] = [None] * num_layers
        self._saved_keep: list[dict[int, bool]] = [{} for _ in range(num_layers)]
        self._recached = False

    # ----------------------------------------------------------------------------------------------- chunk protocol
    def begin_chunk(self, frames: list[int] | range, *, recache: bool = False) -> None:
        """Fix the attended frames and positions for the next chunk (or a re-cache group)."""
        frames = list(frames)
        cfg = self.config
        if self._pending is not None:
            raise RuntimeError("begin_chunk called twice without end_chunk")
        if not recache and (len(frames) != cfg.chunk_frames or frames[0] != self.next_frame):
            raise ValueError(
                f"expected the chunk of frames {self.next_frame}..{self.next_frame + cfg.chunk_frames - 1}, got {frames}"
            )
        history, positions = [], []
        for cache in self.layers:
            if cache.k is not None:
                compact(cache, keep_grad=self.keep_grad)  # the only copies of the history outside the passes
            slots = [cache.slots[i] for i in cache.occupied()]
            copies = [Slot(frame=s.frame, role=s.role, clean=s.clean, keep=s.keep) for s in slots]
            history.append(copies)
            positions.append(assign_positions(cfg, copies, frames))
        self._pending = _Pending(
            frames=frames, recache=recache, history=history, positions=positions, summaries=[None] * self.num_layers
        )

    def attention(self, *, commit: bool = False, in_place: bool = True, repeat: int = 1) -> MemoryAttention:
        """Attention context for one forward pass over the pending chunk; ``commit`` writes its K/V; ``in_place``
        False always reads and concatenates (see the module docstring); ``repeat`` > 1: the pass runs that many
        versions of the chunk stacked along the batch (e.g. several noise levels), each attending the same memory,
        and commits nothing.
        """
        if self._pending is None:
            raise RuntimeError("call begin_chunk before running the model on a chunk")
        if repeat < 1 or (commit and repeat != 1):
            raise ValueError(f"repeat must be a positive number of chunk versions, and 1 for a commit, got {repeat}")
        return MemoryAttention(memory=self, commit=commit, in_place=in_place, repeat=repeat)

    def end_chunk(self) -> ChunkStep | None:
        """Consolidate and evict after the commit pass; returns the chunk's trace entry (None for a re-cache)."""
        p = self._pending
        if p is None or any(s is None for s in p.summaries):
            raise RuntimeError("end_chunk needs a committed chunk: run the clean pass with attention(commit=True)")
        self._pending = None
        if p.recache:
            for cache, keep in zip(self.layers, self._saved_keep):
                for f in p.frames:
                    cache.slots[cache.slot_of(f)].keep = keep.get(f, False)
            return None
        cfg = self.config
        chunk = p.frames[0] // cfg.chunk_frames
        refs = [self._reference(i) for i in range(self.num_layers)]
        checked = is_checked(cfg, chunk)
        measured = [i for i, (ref, _) in enumerate(refs) if checked and cfg.slow_select == "surprisal" and ref is not None]
        sims: list[float | None] = [None] * self.num_layers
        if measured:  # one host read per chunk, not one per layer
            values = torch.stack([similarity(p.summaries[i], refs[i][0]) for i in measured]).tolist()
            for i, value in zip(measured, values):
                sims[i] = value
        steps = [self._end_layer(i, chunk, p, checked, sims[i], refs[i][1]) for i in range(self.num_layers)]
        self.next_frame = p.frames[-1] + 1
        step = ChunkStep(chunk=chunk, frames=tuple(p.frames), layers=steps, cache_bytes=self.nbytes(),
                         allocated_bytes=self.allocated_bytes(), recached=self._recached)
        self._recached = False
        self.trace.chunks.append(step)
        return step

    def _reference(self, i: int) -> tuple[Tensor | None, int | None]:
        """Layer ``i``'s surprisal reference summary and the chunk it came from."""
        cache = self.layers[i]
        if self.config.similarity_reference == "last_consolidated" and cache.anchor_summary is not None:
            return cache.anchor_summary, self._anchor_chunk[i]
        return cache.prev_summary, self._prev_chunk[i]

    def _end_layer(self, i: int, chunk: int, p: _Pending, checked: bool, sim: float | None,
                   ref_chunk: int | None) -> LayerStep:
        cfg, cache = self.config, self.layers[i]
        summary = p.summaries[i]
        consolidated = checked and decide(cfg, sim)
        if consolidated:  # CF: keep only the first latent frame(s) of a consolidated chunk
            for f in p.frames[: cfg.keep_frames]:
                cache.slots[cache.slot_of(f)].keep = True
            cache.anchor_summary, self._anchor_chunk[i] = summary, chunk
        cache.prev_summary, self._prev_chunk[i] = summary, chunk
        self._evict_overflow(cache)
        hist_pos, query_pos = p.positions[i]
        slot_map = {s.frame: q for s, q in zip(p.history[i], hist_pos)} | dict(zip(p.frames, query_pos))
        return LayerStep(
            slot_map=slot_map, roles={s.frame: s.role.value for s in p.history[i]}, checked=checked,
            similarity=sim, reference_chunk=ref_chunk if sim is not None else None, threshold=cfg.tau,
            consolidated=consolidated,
        )

    def _evict_overflow(self, cache: LayerCache) -> None:
        """Fast frames beyond the window leave it: promoted to slow memory if marked, else evicted."""
        cfg = self.config
        if cfg.fast_history is None:
            return
        fast = cache.frames(Role.FAST)
        for f in fast[: max(0, len(fast) - cfg.fast_history)]:
            if not cache.slots[cache.slot_of(f)].keep:
                evict(cache, f)
                continue
            slow = cache.frames(Role.SLOW)
            for old in slow[: max(0, len(slow) - cfg.slow_frames + 1)]:  # FIFO: the oldest slow entry goes
                evict(cache, old)
            promote(cache, f)

    # ----------------------------------------------------------------------------------------------- prompt switch
    def fast_frames(self) -> list[int]:
        """Frames currently in the fast window (the same in every layer)."""
        return self.layers[0].frames(Role.FAST)

    def drop_fast(self) -> list[int]:
        """Evict the fast window before re-encoding it under a new prompt; returns its frames.

        Their slow-memory marks are remembered and restored when the frames are committed again.
        """
        if self._pending is not None:
            raise RuntimeError("cannot drop the fast window in the middle of a chunk")
        frames = self.fast_frames()
        for cache, saved in zip(self.layers, self._saved_keep):
            saved.clear()
            for f in frames:
                saved[f] = cache.slots[cache.slot_of(f)].keep
                evict(cache, f)
        self._recached = bool(frames)
        return frames

    # ----------------------------------------------------------------------------------------------- accounting
    def nbytes(self) -> int:
        """Bytes of K/V held by occupied slots, all layers."""
        return sum(c.nbytes() for c in self.layers)

    def allocated_bytes(self) -> int:
        """Bytes of K/V buffers allocated (the rotated-keys buffers included), all layers."""
        return sum(t.numel() * t.element_size() for c in self.layers for t in (c.k, c.v, c.rotated) if t is not None)

    # ----------------------------------------------------------------------------------------------- attention
    def read(self, layer: int, grid: Grid, device: torch.device, *, copy: bool = False) -> LayerView:
        """What ``layer`` attends to for the pending chunk: its cached K/V and the RoPE angles of history and chunk.

        Args:
            layer: block index.
            grid: (f, h, w) token grid of the chunk being computed.
            device: device of the queries (for the angle table).
            copy: return K/V that do not alias the cache buffers (see :func:`~.state.gather`), i.e. a snapshot
                that stays valid whatever the memory does afterwards.

        """
        p = self._pending
        if p is None:
            raise RuntimeError("the memory has no pending chunk: call begin_chunk before running the model on a chunk")
        f, h, w = grid
        if f != len(p.frames):
            raise ValueError(f"the model ran on {f} latent frames but the pending chunk has {len(p.frames)}")
        hist_k, hist_v, slots = gather(self.layers[layer], copy=copy)
        if [s.frame for s in slots] != [s.frame for s in p.history[layer]]:
            raise RuntimeError(f"layer {layer} cache changed since begin_chunk")
        hist_pos, query_pos = p.positions[layer]
        cos, sin = self._angles(p, tuple(hist_pos) + tuple(query_pos), h, w, device)
        return LayerView(k=hist_k, v=hist_v, cos=cos, sin=sin, grid=grid)

    def shared_view(self, layer: int, grid: Grid, device: torch.device) -> LayerView:
        """:meth:`read` as a snapshot, once per layer and chunk: every read-and-concatenate pass of the chunk that
        asks gets the same view (and so the same rotated history keys, :meth:`LayerView.rotated_history`).

        A snapshot: K/V copied out of the cache, except with ``keep_grad``, whose buffers are never written in place
        (every write makes new ones), so views of them stay what they were.
        """
        p = self._pending
        if p is None:
            raise RuntimeError("the memory has no pending chunk: call begin_chunk before running the model on a chunk")
        key = (layer, tuple(grid))
        if key not in p.views:
            p.views[key] = self.read(layer, grid, device, copy=not self.keep_grad)
        return p.views[key]

    def attend_in_place(self, layer: int, q: Tensor, k: Tensor, v: Tensor, grid: Grid) -> Tensor | None:
        """The in-place read path (module docstring): the chunk's raw q, k, v (B, f * N, H, D) -> (B, f * N, H, D).

        Only for passes without autograd on a memory without ``keep_grad`` (the chunk's K/V are written into free
        cache slots and the layer's ``rotated`` buffer in place). None when this layer cannot take the path (a cache
        in another dtype than the chunk); the caller then reads and concatenates.
        """
        p, cache = self._pending, self.layers[layer]
        if p is None:
            raise RuntimeError("the memory has no pending chunk: call begin_chunk before running the model on a chunk")
        f, h, w = grid
        if f != len(p.frames):
            raise ValueError(f"the model ran on {f} latent frames but the pending chunk has {len(p.frames)}")
        n, tokens = len(p.history[layer]), h * w
        hist_pos, query_pos = p.positions[layer]
        cos, sin = self._angles(p, tuple(hist_pos) + tuple(query_pos), h, w, q.device)  # ((n + f) * N, D / 2)
        if n == 0:  # nothing cached yet (first chunk): the chunk attends to itself
            qr, kr = (apply_rope(x, cos, sin) for x in (q, k))  # (B, f * N, H, D)
            return sdpa(qr, kr, v)
        if cache.k.dtype != k.dtype or cache.k.shape[0] != k.shape[0]:
            return None
        reserve(cache, n + f)
        if cache.rotated is None or cache.rotated.shape[1] < len(cache.slots):
            cache.rotated = torch.empty_like(cache.k)
        if layer not in p.rotated:  # once per chunk: the history's keys at this chunk's positions
            hist = cache.k[:, :n].flatten(1, 2)  # (B, n * N, H, D), a view: begin_chunk compacted the cache
            cache.rotated[:, :n].flatten(1, 2).copy_(apply_rope(hist, cos[: n * tokens], sin[: n * tokens]))
            p.rotated.add(layer)
        keys = cache.rotated[:, : n + f].flatten(1, 2)  # (B, (n + f) * N, H, D) views
        values = cache.v[:, : n + f].flatten(1, 2)
        return self._attend_chunk(q, k, v, cos[n * tokens:], sin[n * tokens:], keys, values)

    def _angles(self, p: _Pending, positions: tuple[int, ...], h: int, w: int, device) -> tuple[Tensor, Tensor]:
        key = (positions, h, w)
        if key not in p.angles:
            split, theta = self._rope
            pos = torch.tensor(positions)  # (n + f,) once per chunk; on CUDA a copy the host does not wait for
            pos = pos.pin_memory().to(device, non_blocking=True) if torch.device(device).type == "cuda" else pos.to(device)
            p.angles[key] = rope_angles(pos, h, w, split, theta)
        return p.angles[key]

    def write(self, layer: int, k: Tensor, v: Tensor, grid: Grid) -> None:
        """Commit the pending chunk's raw K/V (B, f * N, H, D) of ``layer`` into free slots and record its key summary."""
        cfg, p, cache = self.config, self._pending, self.layers[layer]
        k5, v5 = k.unflatten(1, (grid[0], -1)), v.unflatten(1, (grid[0], -1))  # (B, f, N, H, D)
        if cache.k is None:
            capacity = cfg.capacity if cfg.bounded else 2 * cfg.chunk_frames
            allocate(cache, capacity, k5, growable=not cfg.bounded)
        roles = [Role.SINK if f < cfg.sink_frames else Role.FAST for f in p.frames]
        write_frames(cache, p.frames, k5, v5, roles, keep_grad=self.keep_grad)
        p.summaries[layer] = key_summary(k)


def _same(x: Tensor) -> Tensor:
    return x


@dataclass(kw_only=True, slots=True, frozen=True)
class LayerView:
    """One layer's view of the memory for one chunk: the cached history and the RoPE angles of history and chunk."""

    k: Tensor | None
    """(B, n * N, H, D) raw cached keys (sink, slow, fast order), None when nothing is cached."""
    v: Tensor | None
    """(B, n * N, H, D) cached values."""
    cos: Tensor
    """(n * N + f * N, D / 2) RoPE cosines: the history's positions, then the chunk's."""
    sin: Tensor
    """(n * N + f * N, D / 2) RoPE sines."""
    grid: Grid
    """(f, h, w) token grid of the chunk this view was read for."""
    rotated: dict = field(default_factory=dict, compare=False, repr=False)
    """dtype -> (the history keys rotated to their positions, whether that rotation recorded autograd)."""

    def rotated_history(self, dtype: torch.dtype) -> Tensor:
        """(B, n * N, H, D) the history's keys in ``dtype``, rotated to their positions: computed once, and again
        only where a gradient-recording pass needs the gradient an earlier pass without autograd did not record.

        The rotation keeps its autograd inputs itself (plain saved-tensor hooks), not through an enclosing
        activation checkpoint: a checkpointed block that re-runs in backward finds the rotation done and skips it,
        so it must not be one of the tensors the checkpoint expects the re-run to recompute.
        """
        grad = torch.is_grad_enabled() and self.k.requires_grad
        hit = self.rotated.get(dtype)
        if hit is not None and (hit[1] or not grad):
            return hit[0]
        m = self.k.shape[1]
        with torch.autograd.graph.saved_tensors_hooks(_same, _same):
            keys = apply_rope(self.k.to(dtype), self.cos[:m], self.sin[:m])
        self.rotated[dtype] = (keys, grad)
        return keys

    def attend(self, q: Tensor, k: Tensor, v: Tensor, repeat: int = 1) -> Tensor:
        """The chunk's queries (B, f * N, H, D) attend to the history and to the chunk's own k, v -> (B, f * N, H, D).

        ``repeat``: q, k, v hold that many versions of the chunk stacked along the batch (repeat * B), each
        attending the same history (rotated once, then repeated).
        """
        nq = q.shape[1]
        cos, sin = self.cos[-nq:], self.sin[-nq:]
        if self.k is None:
            return sdpa(apply_rope(q, cos, sin), apply_rope(k, cos, sin), v)
        if q.shape[0] != repeat * self.k.shape[0]:
            raise ValueError(f"a batch of {q.shape[0]} is not {repeat} x the memory's batch {self.k.shape[0]}")
        hist_k = self.rotated_history(k.dtype)  # (B, n * N, H, D)
        hist_v = self.v.to(v.dtype)
        if repeat > 1:
            hist_k, hist_v = hist_k.repeat(repeat, 1, 1, 1), hist_v.repeat(repeat, 1, 1, 1)
        k_all = torch.cat([hist_k, apply_rope(k, cos, sin)], dim=1)  # (repeat * B, (n + f) * N, H, D)
        v_all = torch.cat([hist_v, v], dim=1)
        return sdpa(apply_rope(q, cos, sin), k_all, v_all)


@dataclass(slots=True)
class MemoryAttention:
    """:class:`AttentionContext` backed by a :class:`SlowFastMemory` for the pending chunk.

    A pass that records autograd keeps, per layer, a snapshot of what it read (copies, not views of the cache; views
    for a ``keep_grad`` memory, whose buffers are never written in place), the one every such pass of the chunk
    shares (:meth:`SlowFastMemory.shared_view`). Activation checkpointing re-runs a block's forward during backward,
    when later chunks have since rewritten the cache in place and the memory is on another chunk; the recomputation
    then reads the snapshot, so it sees exactly what the first pass saw and the gradient is exact (docs/method.md
    section 7). It also commits at most once per layer, so a recomputed commit pass writes nothing. Without autograd
    nothing is kept: inference reads the cache as before, one layer at a time. Cost under autograd: one copy of
    each layer's attended history per chunk, alive as long as a context that holds it (until backward when
    checkpointing, until the end of the forward otherwise).
    """

    memory: SlowFastMemory
    commit: bool = False
    in_place: bool = True
    """Use the in-place read path where it applies (no autograd, no ``keep_grad``); False always reads and
    concatenates (the reference the in-place path is tested against)."""
    repeat: int = 1
    """Versions of the chunk stacked along the batch of the pass, each attending the same memory (read and
    concatenate; never a commit)."""
    views: dict[int, LayerView] = field(default_factory=dict)
    """Per layer, the snapshot read by a gradient-recording pass."""
    committed: set[int] = field(default_factory=set)
    """Layers whose K/V this context has written."""

    def attend(self, layer: int, q: Tensor, k: Tensor, v: Tensor, grid: Grid) -> Tensor:
        """Attend to the cached frames and the chunk itself; commit the chunk's K/V when asked."""
        out = None
        if self.in_place and self.repeat == 1 and not self.memory.keep_grad and not torch.is_grad_enabled():
            out = self.memory.attend_in_place(layer, q, k, v, grid)
        if out is None:
            out = self._read_and_concatenate(layer, q, k, v, grid)
        if self.commit and layer not in self.committed:
            self.memory.write(layer, k, v, grid)
            self.committed.add(layer)
        return out

    def write_only(self, layer: int, k: Tensor, v: Tensor, grid: Grid) -> None:
        """The commit of a pass that needs no output (``WanModel(kv_only=True)``): the chunk's raw K/V of ``layer``
        (B, f * N, H, D) written as :meth:`attend` writes them, nothing attended.
        """
        if not self.commit:
            raise ValueError("write_only is the commit of a pass: use the memory's attention(commit=True)")
        if layer not in self.committed:
            self.memory.write(layer, k, v, grid)
            self.committed.add(layer)

    def _read_and_concatenate(self, layer: int, q: Tensor, k: Tensor, v: Tensor, grid: Grid) -> Tensor:
        view = self.views.get(layer)
        if view is None:
            record = torch.is_grad_enabled()
            if record or self.memory.keep_grad:  # a snapshot, shared by the chunk's passes
                view = self.memory.shared_view(layer, grid, q.device)
            else:
                view = self.memory.read(layer, grid, q.device)
            if record:
                self.views[layer] = view
        elif view.grid != grid:
            raise ValueError(f"this memory context was read for the token grid {view.grid}, not {grid}")
        return view.attend(q, k, v, self.repeat)
