"""Context Forcing Memory Config."""

from __future__ import annotations

from comfy_api.v0_0_2 import io

from context_forcing_core.memory.config import MEMORY_BOUNDS, MemoryConfig, memory_preset

from .types import CATEGORY, CFMemory, check_finite_input, combo, limits

PRESETS = ["context_forcing", "longlive", "self_forcing", "infinity_rope", "uniform"]
KEEP = -1
"""Widget value meaning "the preset's value"."""
PAPER_TAU = memory_preset("context_forcing").tau
"""The paper's surprisal threshold, shown in the threshold's tooltip."""
CHOICES = {"positions": ["bounded", "absolute", "slot"], "similarity_reference": ["previous", "last_consolidated"]}


def build_memory(preset: str, threshold: float = KEEP, **fields: int | str) -> MemoryConfig:
    """The preset with every field that is not -1 / "preset" replaced; raises ValueError with a readable message."""
    if preset not in PRESETS:
        raise ValueError(f"unknown memory preset {preset!r}; choose one of {', '.join(PRESETS)}")
    changes: dict[str, object] = {k: v for k, v in fields.items() if v not in (KEEP, "preset")}
    if threshold != KEEP:
        changes["tau"] = threshold
    if changes.get("slow_frames") == 0:
        changes["slow_select"] = "none"  # no slow memory: nothing to select (the node has no slow_select input)
    try:
        return memory_preset(preset).replace(**changes)
    except (TypeError, ValueError) as err:
        message = str(err).replace("MemoryConfig.tau", "threshold").replace("MemoryConfig.", "")
        shown = {("threshold" if k == "tau" else k): v for k, v in changes.items() if k != "slow_select"}
        raise ValueError(f"memory preset {preset!r} with {shown}: {message}") from None


class MemoryConfigNode(io.ComfyNode):
    """Pick a memory preset and optionally override its fields (-1 / "preset" keeps the preset's value)."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        keep = "-1 keeps the preset's value."
        return io.Schema(
            node_id="CF_MemoryConfig",
            display_name="Context Forcing Memory Config",
            category=CATEGORY,
            description="What the student keeps in its KV cache, in latent frames (4 per second of video): an "
                        "attention sink, a slow memory filled with surprising chunks, and a rolling fast window; "
                        "bounded positions keep RoPE time inside the trained range.",
            inputs=[
                combo("preset", PRESETS, default="context_forcing",
                      tooltip="context_forcing: sink 3 + slow 12 + fast 6 (bounded positions); longlive: sink 3 + "
                              "recent 9; self_forcing: window of 21; infinity_rope: sink 1 + 4; uniform: Context "
                              "Forcing with slow memory every 2nd chunk."),
                io.Int.Input("sink_frames", default=KEEP, **limits(MEMORY_BOUNDS["sink_frames"], KEEP),
                             tooltip=f"Attention sink frames. {keep}"),
                io.Int.Input("slow_frames", default=KEEP, **limits(MEMORY_BOUNDS["slow_frames"], KEEP),
                             tooltip=f"Slow memory capacity (consolidated frames; 0 turns slow memory off). {keep}"),
                io.Int.Input("fast_frames", default=KEEP, **limits(MEMORY_BOUNDS["fast_frames"], KEEP),
                             tooltip=f"Rolling window incl. the chunk being generated (>= 3). {keep}"),
                io.Float.Input("threshold", default=KEEP, **limits(MEMORY_BOUNDS["tau"]), step=0.001,
                               tooltip="Surprisal threshold tau: a checked chunk whose key similarity to the "
                                       f"reference is below it enters slow memory ({PAPER_TAU} as in the paper, for Wan "
                                       "and the bundled toy student alike; the Surprisal Inspector shows the "
                                       f"similarities). {keep}"),
                io.Int.Input("consolidate_every", default=KEEP, **limits(MEMORY_BOUNDS["consolidate_every"], KEEP),
                             tooltip=f"Chunks between consolidation checks. {keep}"),
                combo("positions", ["preset", *CHOICES["positions"]], default="preset",
                      tooltip="RoPE time: bounded (Context Forcing), absolute frame index, or slot order."),
                combo("similarity_reference", ["preset", *CHOICES["similarity_reference"]], default="preset",
                      tooltip="Compare each chunk with the previous one or with the last consolidated one."),
            ],
            outputs=[CFMemory.Output(display_name="memory")],
        )

    @classmethod
    def validate_inputs(cls, threshold: float) -> bool | str:
        # One named input: ComfyUI skips its own range check for named inputs and repeats a custom error once per
        # named input. The integers and dropdowns are checked by ComfyUI (min / max from MEMORY_BOUNDS, option
        # lists); the threshold here, because NaN passes ComfyUI's comparisons. Values between the -1 sentinel and a
        # field's minimum (fast_frames below the chunk size, consolidate_every 0) are refused on their own inputs
        # when the prompt is queued (input_checks.py), and again by execute.
        return check_finite_input("Memory Config", "threshold", threshold, MEMORY_BOUNDS["tau"])

    @classmethod
    def execute(cls, preset: str, **fields: object) -> io.NodeOutput:
        try:
            return io.NodeOutput(build_memory(preset, **fields))
        except ValueError as err:
            return io.NodeOutput(None, block_execution=f"Memory Config: {err}")
