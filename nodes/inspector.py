"""Context Forcing Surprisal Inspector: what the memory kept, as a plot and a summary."""

from __future__ import annotations

import numpy as np
import torch
from comfy_api.v0_0_2 import io, ui

from context_forcing_core import MemoryTrace
from context_forcing_core.diffusion.settings import LAYER
from context_forcing_core.memory.plot import surprisal_plot, trace_summary

from .types import CATEGORY, CFTrace, limits, wrong_connection


class SurprisalInspector(io.ComfyNode):
    """Plot key similarity against the threshold, consolidation events and slot occupancy by RoPE position."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="CF_SurprisalInspector",
            display_name="Context Forcing Surprisal Inspector",
            category=CATEGORY,
            description="Shows per chunk the key similarity to the reference against the threshold (surprising "
                        "chunks enter slow memory), and which frame sat at which RoPE position (sink, slow, fast).",
            inputs=[
                CFTrace.Input("memory_trace"),
                io.Int.Input("layer", default=0, **limits(LAYER),
                             tooltip="Transformer layer (memory decides per layer)."),
            ],
            outputs=[io.Image.Output(display_name="plot"), io.String.Output(display_name="summary")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, memory_trace: MemoryTrace, layer: int) -> io.NodeOutput:
        refusal = wrong_connection("Surprisal Inspector", "memory_trace", memory_trace, MemoryTrace,
                                   "Context Forcing Long Rollout Sampler")
        if refusal is None and not memory_trace.chunks:
            refusal = "Surprisal Inspector: the memory trace is empty"
        if refusal is not None:  # an output node: a block alone would show nowhere, so the node shows the message
            return io.NodeOutput(None, None, ui=ui.PreviewText(refusal).as_dict(), block_execution=refusal)
        last = len(memory_trace.chunks[0].layers) - 1
        note = f"layer {layer} does not exist (layers 0..{last}); showing layer {last}\n" if layer > last else ""
        layer = min(layer, last)
        plot = surprisal_plot(memory_trace, layer)
        image = torch.from_numpy(np.asarray(plot, dtype=np.float32) / 255.0)[None]  # (1, H, W, 3)
        summary = note + trace_summary(memory_trace, layer)
        shown = ui.PreviewImage(image, cls=cls).as_dict() | ui.PreviewText(summary).as_dict()
        return io.NodeOutput(image, summary, ui=shown)
