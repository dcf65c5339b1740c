"""Custom ComfyUI socket types of the pack and the object behind CF_MODEL.

A node that refuses its inputs at run time returns ``io.NodeOutput(None, ..., block_execution=message)``: one
placeholder per output, because ComfyUI 0.3.75 drops a block without result values and runs the next nodes anyway.
The artist then sees "Execution Blocked: message" on the next node, without a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from comfy_api.v0_0_2 import io

from context_forcing_core.models.config import WanConfig
from context_forcing_core.models.keys import infer_config, to_official_keys
from context_forcing_core.student import Student, load_student

CATEGORY = "Context Forcing"

CFModel = io.Custom("CF_MODEL")
"""A :class:`ModelHandle`."""
CFMemory = io.Custom("CF_MEMORY_CONFIG")
"""A ``context_forcing_core.MemoryConfig``."""
CFTrace = io.Custom("CF_MEMORY_TRACE")
"""A ``context_forcing_core.MemoryTrace``."""
CFSchedule = io.Custom("CF_PROMPT_SCHEDULE")
"""A tuple of :class:`ScheduledPrompt`, in switch order."""


@dataclass(frozen=True, slots=True)
class ScheduledPrompt:
    """One prompt of a schedule: from ``seconds`` on, either text (toy models) or umT5 states (Wan)."""

    seconds: float
    text: str
    conditioning: Any | None


@dataclass(slots=True)
class ModelHandle:
    """A student loaded by the pack, or a view on the weights of a MODEL that ComfyUI manages (``patcher``)."""

    student: Student | None = None
    patcher: Any | None = None

    def resolve(self) -> Student:
        """The student to run now; a ComfyUI MODEL's current weights are wrapped without copying."""
        if self.patcher is None:
            assert self.student is not None
            return self.student
        module = self.patcher.model.diffusion_model
        weights = module.state_dict()
        config = getattr(module, "config", None)  # ours; ComfyUI's Wan module keeps num_heads as an attribute
        if not isinstance(config, WanConfig):
            config = infer_config(to_official_keys(weights), hint={"num_heads": module.num_heads})
        student = load_student(weights, share=True, config=config)  # ValueError: not a Wan2.1 T2V DiT
        student.name = f"MODEL {type(self.patcher.model).__name__}"
        return student
