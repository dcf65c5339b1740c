"""A record of every memory decision: per chunk and layer, what was attended where, and what was consolidated."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(kw_only=True, slots=True)
class LayerStep:
    """One layer at one chunk."""

    slot_map: dict[int, int]
    """Attended source frame -> RoPE temporal position, the chunk's own frames included."""
    roles: dict[int, str]
    """Cached source frame -> "sink", "slow" or "fast" while the chunk was generated."""
    checked: bool
    """Whether the chunk was a consolidation candidate."""
    similarity: float | None
    """Cosine similarity of the chunk's key summary to the reference (None when not checked or not surprisal)."""
    reference_chunk: int | None
    """Chunk the similarity was measured against."""
    threshold: float
    """tau in force."""
    consolidated: bool
    """Whether the chunk's first frames were marked for slow memory."""


@dataclass(kw_only=True, slots=True)
class ChunkStep:
    """One generated chunk."""

    chunk: int
    """Chunk index."""
    frames: tuple[int, ...]
    """Latent frames generated."""
    layers: list[LayerStep]
    """One entry per transformer layer."""
    cache_bytes: int = 0
    """Bytes of K/V held by occupied slots after the chunk was committed (all layers)."""
    allocated_bytes: int = 0
    """Bytes of K/V buffers allocated (all layers); fixed from the first chunk for bounded memories."""
    recached: bool = False
    """Whether the fast window was re-encoded under a new prompt before this chunk."""


@dataclass(slots=True)
class MemoryTrace:
    """Every chunk's memory decisions, in generation order."""

    chunks: list[ChunkStep] = field(default_factory=list)

    def consolidated_chunks(self, layer: int) -> list[int]:
        """Chunks consolidated by ``layer``."""
        return [c.chunk for c in self.chunks if c.layers[layer].consolidated]

    def similarities(self, layer: int) -> list[tuple[int, float]]:
        """(chunk, similarity) of every checked chunk of ``layer``."""
        return [(c.chunk, c.layers[layer].similarity) for c in self.chunks if c.layers[layer].similarity is not None]

    def to_dict(self) -> dict:
        """Plain JSON-serialisable form (slot maps with string keys)."""
        return {
            "chunks": [
                {
                    "chunk": c.chunk,
                    "frames": list(c.frames),
                    "cache_bytes": c.cache_bytes,
                    "allocated_bytes": c.allocated_bytes,
                    "recached": c.recached,
                    "layers": [
                        {
                            "slot_map": {str(k): v for k, v in s.slot_map.items()},
                            "roles": {str(k): v for k, v in s.roles.items()},
                            "checked": s.checked,
                            "similarity": s.similarity,
                            "reference_chunk": s.reference_chunk,
                            "threshold": s.threshold,
                            "consolidated": s.consolidated,
                        }
                        for s in c.layers
                    ],
                }
                for c in self.chunks
            ]
        }
