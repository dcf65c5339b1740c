"""ComfyUI adapters (V3 nodes, ``comfy_api`` v0.0.2) over ``context_forcing_core``: they only convert types."""

from __future__ import annotations

from comfy_api.v0_0_2 import ComfyExtension, io

from .decode import ToyDecode
from .inspector import SurprisalInspector
from .loader import LoadModel
from .memory import MemoryConfigNode
from .prompts import PromptSwitch
from .sampler import LongRolloutSampler
from .stream_decode import StreamingDecode

NODES: list[type[io.ComfyNode]] = [LoadModel, MemoryConfigNode, PromptSwitch, LongRolloutSampler, SurprisalInspector,
                                   ToyDecode, StreamingDecode]


class ContextForcingExtension(ComfyExtension):
    """The node list ComfyUI asks for."""

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES


async def comfy_entrypoint() -> ContextForcingExtension:
    """ComfyUI's V3 entry point."""
    return ContextForcingExtension()
