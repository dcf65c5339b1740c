"""Custom ComfyUI socket types of the pack and the object behind CF_MODEL.

A node that refuses its inputs at run time returns ``io.NodeOutput(None, ..., block_execution=message)``: one
placeholder per output, because ComfyUI 0.3.75 drops a block without result values and runs the next nodes anyway.
The artist then sees "Execution Blocked: message" on the next node, without a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from comfy_api.v0_0_2 import io

from context_forcing_core.memory.config import Bound
from context_forcing_core.models.config import WanConfig
from context_forcing_core.models.keys import infer_config, to_official_keys
from context_forcing_core.student import Student, load_student

CATEGORY = "Context Forcing"


class _CheckedCombo(io.Combo.Input):
    """A dropdown whose value ComfyUI 0.3.75 checks at validation: its type is the options list (as in V1 nodes).

    With the V3 type "COMBO", ``execution.validate_inputs`` never compares the value with the options, so a value
    typed into the API (``dtype="int8"``) reached ``execute``. The list type gets one "Value not in list" error on
    this input, and the editor shows the same dropdown.
    """

    def get_io_type(self) -> list:
        return list(self.options)


def combo(id: str, options: list[str], **kwargs: Any) -> io.Combo.Input:
    """A dropdown input that ComfyUI refuses at validation when the value is not one of ``options``."""
    return _CheckedCombo(id, options=options, **kwargs)


def limits(bound: Bound, low: int | float | None = None) -> dict[str, int | float]:
    """Widget min / max from a core :class:`Bound` (``low`` replaces the minimum, e.g. -1 for "keep the preset").

    ComfyUI checks them at validation for every input the node's ``validate_inputs`` does not name, with one
    error on that input ("Value 1000000 bigger than max of 64"); a node names at most one input, because ComfyUI
    repeats a custom error once per named input.
    """
    return {"min": bound.low if low is None else low, "max": bound.high}


def shown(value: object, limit: int = 80) -> object:
    """A user-typed name as a message shows it: cut to ``limit`` characters (a 1-MB name stays out of errors)."""
    return value if not isinstance(value, str) or len(value) <= limit else value[:limit - 3] + "..."


def check_finite_input(node: str, name: str, value: object, bound: Bound) -> bool | str:
    """``validate_inputs`` answer for one float input: True, or a message naming the node, input, value and range."""
    try:
        bound.check(name, value)
    except ValueError as err:
        return f"{node}: {err}"
    return True

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


def wrong_connection(node: str, name: str, value: object, expected: type | tuple[type, ...], source: str) -> str | None:
    """None when ``value`` is an ``expected`` object; else a message saying what to connect to input ``name``.

    ComfyUI passes a constant typed into the API for a socket input straight to ``execute``: without this check a
    string in place of a model would end in an AttributeError and a traceback.
    """
    if isinstance(value, expected):
        return None
    return f"{node}: input {name!r} must be connected to {source}, got a {type(value).__name__}"


def is_conditioning(value: object) -> bool:
    """Whether ``value`` looks like a ComfyUI CONDITIONING: a non-empty list of [states tensor, dict] pairs."""
    return (isinstance(value, list) and bool(value) and isinstance(value[0], (list, tuple)) and len(value[0]) >= 1
            and isinstance(value[0][0], torch.Tensor))


def is_schedule(value: object) -> bool:
    """Whether ``value`` is a prompt schedule made by Prompt Switch nodes."""
    return isinstance(value, tuple) and all(isinstance(p, ScheduledPrompt) for p in value)
