"""Picture of a memory trace: which source frames each chunk attended, coloured by their role."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

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


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def surprisal_plot(trace: MemoryTrace, layer: int = 0, *, width: int = 720) -> Image.Image:
    """Two panels over chunks (left to right): what the memory decided and where it put what it kept.

    Top: the key similarity of every checked chunk (CF Eq. 7) as dots joined by a line, the threshold tau as a
    dashed line, consolidated chunks as red bars (a chunk below tau is surprising and is consolidated).
    Bottom: slot occupancy with RoPE positions: one column per chunk, one row per temporal position (0 at the
    bottom), coloured by the role of the frame at that position (sink blue, slow orange, fast green, the chunk
    being generated grey); with bounded positions (CF Eq. 8) no column grows past the cache size.

    Args:
        trace: the rollout's trace.
        layer: transformer layer to show (similarity and consolidation are decided per layer).
        width: image width in pixels.

    """
    if not trace.chunks:
        raise ValueError("the trace is empty: generate at least one chunk")
    if not 0 <= layer < len(trace.chunks[0].layers):
        raise ValueError(f"layer {layer} out of range 0..{len(trace.chunks[0].layers) - 1}")
    steps = [c.layers[layer] for c in trace.chunks]
    n = len(steps)
    left, right, top_h, gap, label_h = 48, 12, 150, 28, 16
    max_pos = max(max(s.slot_map.values(), default=0) for s in steps)
    cell_h = max(2, min(8, 160 // (max_pos + 1)))
    bottom_h = cell_h * (max_pos + 1)
    height = label_h + top_h + gap + bottom_h + 2 * label_h
    img = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    font = _font()
    plot_w = width - left - right
    col_w = plot_w / n

    def x_of(chunk: int) -> float:
        return left + (chunk + 0.5) * col_w

    # Top panel: similarity against tau.
    y0, y1 = label_h, label_h + top_h
    sims = [s.similarity for s in steps if s.similarity is not None]
    lowest = min([*sims, *(s.threshold for s in steps)], default=0.0)
    lo, hi = min(lowest, 1.0) - max(0.1 * (1.0 - lowest), 0.0005), 1.0  # a margin of a tenth of the span
    digits = 2 if hi - lo >= 0.1 else 3 if hi - lo >= 0.01 else 4  # labels that tell 0.998 from 0.999

    def y_of(value: float) -> float:
        return y1 - (value - lo) / (hi - lo) * (y1 - y0)

    draw.rectangle([left, y0, left + plot_w, y1], outline=(180, 180, 180))
    for i, s in enumerate(steps):
        if s.consolidated:
            draw.rectangle([x_of(i) - col_w / 2, y0 + 1, x_of(i) + col_w / 2, y1 - 1], fill=(255, 205, 205))
    tau_y = y_of(steps[-1].threshold)
    for x in range(left, left + plot_w, 8):
        draw.line([x, tau_y, min(x + 4, left + plot_w), tau_y], fill=(229, 57, 53), width=1)
    points = [(x_of(i), y_of(s.similarity)) for i, s in enumerate(steps) if s.similarity is not None]
    if len(points) > 1:
        draw.line(points, fill=(66, 133, 244), width=1)
    for x, y in points:
        draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(66, 133, 244))
    draw.text((2, y0 - 2), f"{hi:.{digits}f}", fill=(0, 0, 0), font=font)
    draw.text((2, y1 - 10), f"{lo:.{digits}f}", fill=(0, 0, 0), font=font)
    draw.text((left, 2), f"key similarity per checked chunk (blue), tau = {steps[-1].threshold:.4g} (red dashes), "
              "consolidated chunks shaded", fill=(0, 0, 0), font=font)

    # Bottom panel: occupancy by RoPE position.
    b0 = y1 + gap
    draw.text((left, b0 - label_h), "RoPE position of each attended frame (sink blue, slow orange, fast green, "
              "chunk grey)", fill=(0, 0, 0), font=font)
    for i, s in enumerate(steps):
        for frame, pos in s.slot_map.items():
            colour = COLOURS[s.roles.get(frame, "query")]
            yb = b0 + bottom_h - (pos + 1) * cell_h
            draw.rectangle([x_of(i) - col_w / 2, yb, x_of(i) + col_w / 2 - (1 if col_w > 3 else 0), yb + cell_h - 1],
                           fill=colour)
    draw.rectangle([left, b0, left + plot_w, b0 + bottom_h], outline=(180, 180, 180))
    draw.text((2, b0 + bottom_h - 10), "0", fill=(0, 0, 0), font=font)
    draw.text((2, b0), str(max_pos), fill=(0, 0, 0), font=font)
    ticks = max(1, n // 8)
    for i in range(0, n, ticks):
        draw.text((x_of(i) - 4, b0 + bottom_h + 2), str(i), fill=(0, 0, 0), font=font)
    draw.text((left + plot_w - 40, b0 + bottom_h + 2), "chunk", fill=(0, 0, 0), font=font)
    return img


def trace_summary(trace: MemoryTrace, layer: int = 0) -> str:
    """A few lines for artists: chunks, what was consolidated, what is attended at the end, memory held."""
    if not trace.chunks:
        return "no chunks generated"
    steps = [c.layers[layer] for c in trace.chunks]
    checked = [s for s in steps if s.checked]
    consolidated = trace.consolidated_chunks(layer)
    last = steps[-1]
    roles = [last.roles.get(f, "query") for f in last.slot_map]
    sims = [s.similarity for s in steps if s.similarity is not None]
    frames = trace.chunks[-1].frames[-1] + 1
    lines = [
        f"{len(steps)} chunks, {frames} latent frames; layer {layer} of {len(trace.chunks[0].layers)}",
        f"consolidation checks: {len(checked)}, consolidated: {len(consolidated)} "
        f"(chunks {', '.join(map(str, consolidated[:12]))}{' ...' if len(consolidated) > 12 else ''})",
        f"attended at the end: {len(last.slot_map)} frames (sink {roles.count('sink')}, slow {roles.count('slow')}, "
        f"fast {roles.count('fast')}, chunk {roles.count('query')}); highest RoPE position "
        f"{max(last.slot_map.values(), default=0)}",
        f"cache: {trace.chunks[-1].cache_bytes / 2**20:.1f} MiB held, {trace.chunks[-1].allocated_bytes / 2**20:.1f} MiB "
        "allocated",
    ]
    if sims:
        lines.insert(2, f"similarity: min {min(sims):.4f}, mean {sum(sims) / len(sims):.4f}, tau {last.threshold:.4f}")
    return "\n".join(lines)
