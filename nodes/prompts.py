"""Context Forcing Prompt Switch: build a prompt schedule (prompts that take over at given seconds)."""

from __future__ import annotations

from comfy_api.v0_0_2 import io

from context_forcing_core.diffusion.settings import SECONDS

from .types import CATEGORY, CFSchedule, ScheduledPrompt, check_finite_input, is_conditioning, is_schedule, limits


class PromptSwitch(io.ComfyNode):
    """Append "from `at_seconds` on, use this prompt" to a schedule; chain several for several switches."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="CF_PromptSwitch",
            display_name="Context Forcing Prompt Switch",
            category=CATEGORY,
            description="Switch prompts during one long rollout. The sampler's own prompt runs from 0 s; each switch "
                        "takes over at the first chunk starting at or after its time (the recent frames are "
                        "re-encoded under the new prompt, so the scene carries over).",
            inputs=[
                io.Float.Input("at_seconds", default=10.0, **limits(SECONDS), step=0.25),
                io.String.Input("prompt", multiline=True, default="",
                                tooltip="Prompt text for models with a bundled text encoder (the toy model)."),
                io.Conditioning.Input("conditioning", optional=True,
                                      tooltip="For Wan models: CLIP Text Encode output with the umT5 encoder."),
                CFSchedule.Input("schedule", optional=True, tooltip="Earlier switches to chain onto."),
            ],
            outputs=[CFSchedule.Output(display_name="schedule")],
        )

    @classmethod
    def validate_inputs(cls, at_seconds: float) -> bool | str:
        return check_finite_input("Prompt Switch", "at_seconds", at_seconds, SECONDS)

    @classmethod
    def execute(cls, at_seconds: float, prompt: str, conditioning: object | None = None,
                schedule: tuple[ScheduledPrompt, ...] | None = None) -> io.NodeOutput:
        if schedule is not None and not is_schedule(schedule):
            return io.NodeOutput(None, block_execution="Prompt Switch: input 'schedule' must be connected to another "
                                                       "Prompt Switch")
        if conditioning is not None and not is_conditioning(conditioning):
            return io.NodeOutput(None, block_execution="Prompt Switch: input 'conditioning' must be connected to "
                                                       "CLIP Text Encode")
        earlier = tuple(schedule or ())
        if earlier and at_seconds <= earlier[-1].seconds:
            return io.NodeOutput(None, block_execution=f"Prompt Switch at {at_seconds} s must come after the previous "
                                                 f"switch at {earlier[-1].seconds} s")
        return io.NodeOutput((*earlier, ScheduledPrompt(seconds=at_seconds, text=prompt, conditioning=conditioning)))
