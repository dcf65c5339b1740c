"""Picture of a memory trace: which source frames each chunk attended, coloured by their role."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .trace import MemoryTrace

COLOURS = {"sink": (66, 133, 244), "slow": (251, 140, 0), "fast": (52, 168, 83), "query": (230, 230, 230)}


def slot_map_image(trace: MemoryTrace, layer: int = 0, *, cell: int = 3) -> Image.Image:
    """Draw chunks left to right and source frames bottom to top.

    Each column is one chunk; a pixel block at (chunk, frame) is coloured by the role the frame had while the
    chunk was generated (sink blue, slow orange, fast green, the chunk itself light grey). Consolidated chunks are
    marked by a red tick on the top edge. Unattended cells stay black.

    Args:
        trace: the rollout's trace.
        layer: transformer layer to show (slow memory is decided per layer).
        cell: pixels per chunk and per frame.

    """
    if not trace.chunks:
        raise ValueError("the trace is empty: generate at least one chunk")
    if not 0 <= layer < len(trace.chunks[0].layers):
        raise ValueError(f"layer {layer} out of range 0..{len(trace.chunks[0].layers) - 1}")
    frames = trace.chunks[-1].frames[-1] + 1
    chunks = len(trace.chunks)
    tick = 2 * cell
    grid = np.zeros((frames, chunks, 3), dtype=np.uint8)
    for c, step in enumerate(trace.chunks):
        ls = step.layers[layer]
        for f in ls.slot_map:
            grid[f, c] = COLOURS[ls.roles.get(f, "query")]
    img = np.repeat(np.repeat(grid[::-1], cell, axis=0), cell, axis=1)  # frame 0 at the bottom
    img = np.concatenate([np.zeros((tick, img.shape[1], 3), dtype=np.uint8), img], axis=0)
    out = Image.fromarray(img)
    draw = ImageDraw.Draw(out)
    for c, step in enumerate(trace.chunks):
        if step.layers[layer].consolidated:
            draw.rectangle([c * cell, 0, (c + 1) * cell - 1, tick - 2], fill=(229, 57, 53))
    return out
