"""Input checks that ComfyUI's widget min / max cannot express, made when a prompt is queued.

ComfyUI 0.3.75 checks a widget's min / max only for the inputs its node's ``validate_inputs`` does not name, and
repeats a custom error once for every named input, so each pack node names one input. The other inputs can still be
wrong in ways a range does not catch: NaN (it passes every comparison), a value between a field's "-1 keeps the
preset's value" sentinel and its real minimum (``fast_frames`` 0-2, ``consolidate_every`` 0), a video size that is no
multiple of 16. :func:`refuse_in_place` runs as an on-prompt handler, before validation: it replaces each such value
by a text that says what is wrong, which ComfyUI's own INT / FLOAT conversion then refuses with one error, on that
input, before anything runs. Values out of the widget's range are left to ComfyUI's range check (its message names
the bound); links and values ComfyUI cannot convert are left alone too.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from context_forcing_core.diffusion.settings import PIXEL_MULTIPLE, PIXELS
from context_forcing_core.memory.config import MEMORY_BOUNDS, MemoryConfig, memory_preset

from .memory import KEEP

Check = Callable[[float, dict], str | None]
"""(converted value, the node's inputs) -> why the value is refused (a phrase after the input's name), or None."""


def _finite(value: float, inputs: dict) -> str | None:
    return None if math.isfinite(value) else "must be a finite number"


def _multiple(value: float, inputs: dict) -> str | None:
    inside = PIXELS.low <= value <= PIXELS.high
    if inside and value % PIXEL_MULTIPLE:
        return f"must be a multiple of {PIXEL_MULTIPLE} (Wan latents are 1/8 of the pixels, in 2 x 2 patches)"
    return None


def _chunk_frames(inputs: dict) -> int:
    try:
        return memory_preset(inputs.get("preset")).chunk_frames
    except (TypeError, ValueError):
        return MemoryConfig().chunk_frames


def _fast_frames(value: float, inputs: dict) -> str | None:
    chunk = _chunk_frames(inputs)
    if KEEP < value < chunk:
        return f"counts the chunk being generated and must be at least the chunk size {chunk}, or {KEEP} for the preset's"
    return None


def _consolidate_every(value: float, inputs: dict) -> str | None:
    low = MEMORY_BOUNDS["consolidate_every"].low
    return f"must be at least {low}, or {KEEP} for the preset's" if KEEP < value < low else None


CHECKS: dict[str, dict[str, tuple[type, Check]]] = {
    "CF_LongRolloutSampler": {"shift": (float, _finite), "width": (int, _multiple), "height": (int, _multiple)},
    "CF_MemoryConfig": {"fast_frames": (int, _fast_frames), "consolidate_every": (int, _consolidate_every)},
    "CF_LoadModel": {"lora_strength": (float, _finite)},
}
"""Node class -> input -> (the type ComfyUI converts it to, its check); shift's and lora_strength's ranges are their
widgets'."""


def refusals(class_type: object, inputs: object) -> dict[str, str]:
    """Input name -> why its value is refused, for one node of a queued graph (empty for other nodes)."""
    checks = CHECKS.get(class_type) if isinstance(class_type, str) else None
    if not checks or not isinstance(inputs, dict):
        return {}
    found = {}
    for name, (kind, check) in checks.items():
        value = inputs.get(name)
        if isinstance(value, (list, dict)) or value is None:
            continue  # a link, or something ComfyUI refuses itself
        try:
            converted = float(value) if kind is float else int(value)
        except (TypeError, ValueError, OverflowError):
            continue
        if (why := check(converted, inputs)) is not None:
            found[name] = f"{value!r} is refused: {name} {why}"
    return found


def refuse_in_place(json_data: object) -> object:
    """ComfyUI on-prompt handler: replace every refused value of the queued graph by the text saying why."""
    graph = json_data.get("prompt") if isinstance(json_data, dict) else None
    if isinstance(graph, dict):
        for node in graph.values():
            if isinstance(node, dict):
                for name, text in refusals(node.get("class_type"), node.get("inputs")).items():
                    node["inputs"][name] = text
    return json_data
