"""Context Forcing Long Rollout Sampler: chunk-by-chunk generation through the bounded memory."""

from __future__ import annotations

import asyncio
import math
from contextvars import ContextVar

import comfy.latent_formats
import comfy.utils
import torch
import torch.nn.functional as F
from comfy import model_management
from comfy_api.v0_0_2 import io
from PIL import Image
from torch import Tensor

from context_forcing_core import MemoryConfig, MemoryTrace, PromptSchedule, memory_preset, stream
from context_forcing_core.budget import MemoryBudgetError, MemoryNeed, check_budget
from context_forcing_core.diffusion.settings import PIXEL_MULTIPLE, PIXELS, SECONDS, SEED, SHIFT, STEPS
from context_forcing_core.models.loading import inspect_checkpoint_cached
from context_forcing_core.models.wan import WanModel
from context_forcing_core.student import Student, is_toy_config, memory_for
from context_forcing_core.toyworld.codec import ToyCodec
from context_forcing_core.toyworld.story import story_schedule

from .input_checks import refuse_in_place
from .loader import INSPECT_SECONDS, checkpoint_path, resolve_dtype
from .memory import build_memory
from .types import (
    CATEGORY,
    CFMemory,
    CFModel,
    CFSchedule,
    CFTrace,
    ModelHandle,
    ScheduledPrompt,
    check_finite_input,
    is_conditioning,
    is_schedule,
    limits,
    wrong_connection,
)

PREVIEW_SIZE = 512
DEFAULT_PROMPT = story_schedule().visits[0].prompt.text
"""The prompt box's default: the first scene of the demo story (``toyworld.story``), a prompt of the bundled student."""
QUEUED_GRAPH: ContextVar[dict | None] = ContextVar("context_forcing_queued_graph", default=None)
"""The API graph of the /prompt request being validated (each request runs in its own asyncio task)."""
NAME = "Long Rollout Sampler"
LOWER = "seconds, width / height (Wan models) or the Memory Config's sink / slow / fast frames"


def step_list(steps: int) -> list[float]:
    """``steps`` evenly spaced timesteps from 1000 down (4 -> 1000, 750, 500, 250), warped by the shift later."""
    STEPS.check("steps", steps)
    return [1000.0 * (1 - i / steps) for i in range(steps)]


def conditioning_states(conditioning: list, student: Student) -> Tensor:
    """(1, text_len, text_dim) umT5 states from a ComfyUI CONDITIONING ([[states (1, L, D), {...}], ...])."""
    if student.toy:
        raise ValueError("the toy model has its own text encoder: type the prompt into the sampler instead of "
                         "connecting a CONDITIONING")
    if not conditioning:
        raise ValueError("the CONDITIONING is empty")
    states = conditioning[0][0]
    cfg = student.model.config
    if states.ndim != 3 or states.shape[-1] != cfg.text_dim:
        raise ValueError(f"the CONDITIONING holds text states of shape {tuple(states.shape)}, but {student.name} "
                         f"expects width {cfg.text_dim}: encode with CLIPLoader type 'wan' (umT5-XXL)")
    states = states[:1, : cfg.text_len].float()
    return F.pad(states, (0, 0, 0, cfg.text_len - states.shape[1]))  # zero rows, as upstream pads


def prompt_states(student: Student, prompt: str, conditioning: list | None) -> Tensor:
    """One prompt's text states: the conditioning for Wan models, the bundled encoder's for toy models."""
    if conditioning is not None:
        return conditioning_states(conditioning, student)
    if not student.toy:
        raise ValueError(f"{student.name} is a Wan model: connect a CONDITIONING from CLIP Text Encode (umT5)")
    return student.encode_prompt(prompt)


def build_schedule(student: Student, prompt: str, conditioning: list | None,
                   switches: tuple[ScheduledPrompt, ...]) -> PromptSchedule:
    """The sampler's prompt from 0 s, then every switch at its latent frame."""
    fps = student.latent_frames_per_second
    texts = [prompt_states(student, prompt, conditioning)]
    frames = []
    for switch in switches:
        texts.append(prompt_states(student, switch.text, switch.conditioning))
        frames.append(max(1, round(switch.seconds * fps)))
    device = student.model.device
    return PromptSchedule(texts=[t.to(device) for t in texts], switch_frames=frames)


def preview(student: Student, latents: Tensor) -> tuple[str, Image.Image, int]:
    """ComfyUI preview tuple of the newest frame of a chunk (B, C, f, H, W) of normalised latents."""
    last = latents[:1, :, -1:].float().cpu()  # (1, C, 1, H, W)
    if student.toy:
        rgb = ToyCodec().decode(last)[0, 0].clamp(0, 1)  # (3, 32, 32)
    else:
        fmt = comfy.latent_formats.Wan21()
        raw = student.raw_latents(last)[0, :, 0]  # (16, H, W)
        factors = torch.tensor(fmt.latent_rgb_factors)  # (16, 3)
        bias = torch.tensor(fmt.latent_rgb_factors_bias)  # (3,)
        rgb = ((torch.einsum("chw,cr->rhw", raw, factors) + bias[:, None, None] + 1) / 2).clamp(0, 1)
    image = Image.fromarray((rgb.permute(1, 2, 0).numpy() * 255).round().astype("uint8"))
    scale = max(1, 256 // max(image.size))
    return "JPEG", image.resize((image.width * scale, image.height * scale), Image.NEAREST), PREVIEW_SIZE


class NonFiniteLatents(ValueError):
    """A chunk came out with NaN or infinite values."""


def remember_graph(json_data: object) -> object:
    """ComfyUI on-prompt handler: keep the queued graph so the sampler's validation can see what feeds it."""
    graph = json_data.get("prompt") if isinstance(json_data, dict) else None
    QUEUED_GRAPH.set(graph if isinstance(graph, dict) else None)
    return json_data


def register_graph_handler() -> None:
    """Install :func:`~nodes.input_checks.refuse_in_place` and :func:`remember_graph` on the running server (none in
    unit tests: validation then skips the budget).
    """
    try:
        from server import PromptServer
    except ImportError:
        return
    if getattr(PromptServer, "instance", None) is not None:
        PromptServer.instance.add_on_prompt_handler(refuse_in_place)
        PromptServer.instance.add_on_prompt_handler(remember_graph)


def _linked(graph: dict, value: object, class_type: str) -> dict | None:
    """Inputs of the node a link ``[id, slot]`` points at, if it is a ``class_type`` node."""
    if not (isinstance(value, list) and len(value) == 2 and isinstance(graph.get(str(value[0])), dict)):
        return None
    node = graph[str(value[0])]
    return node.get("inputs") if node.get("class_type") == class_type and isinstance(node.get("inputs"), dict) else None


def budget_refusal(graph: dict, node_id: str) -> str | None:
    """The budget message for the sampler ``node_id`` of a queued graph, or None when it fits or cannot be known.

    Known only when the model comes from Load Context Forcing Model by file (a connected ComfyUI MODEL is checked
    at run time) and every value is valid; other nodes report their own invalid values. Reads the checkpoint's
    header (bounded, cached), builds the model on the meta device: nothing is allocated.
    """
    inputs = graph[node_id].get("inputs", {})
    loader = _linked(graph, inputs.get("model"), "CF_LoadModel")
    if loader is None or loader.get("model") is not None:
        return None
    try:
        config = inspect_checkpoint_cached(checkpoint_path(loader.get("ckpt_name")))
        device = model_management.get_torch_device()
        dtype = resolve_dtype(loader.get("dtype"), device)
        fields = _linked(graph, inputs.get("memory"), "CF_MemoryConfig")
        memory = memory_preset("context_forcing") if fields is None else build_memory(**fields)
        with torch.device("meta"):
            model = WanModel(config).to(dtype)
        student = Student(model=model, name=str(loader.get("ckpt_name")), toy=is_toy_config(model))
        frames = student.latent_frames(inputs["seconds"], memory.chunk_frames)
        need = student.rollout_need(memory, student.latent_size(inputs["width"], inputs["height"]), frames)
    except (OSError, ValueError, TypeError, KeyError):
        return None
    try:
        check_memory(need, device, weights=sum(p.numel() * p.element_size() for p in model.parameters()))
    except MemoryBudgetError as err:
        return f"Long Rollout Sampler: {err}"
    return None


def check_memory(need: MemoryNeed, device: torch.device, weights: int) -> None:
    """Refuse (MemoryBudgetError, a ValueError) a rollout that cannot fit, with ComfyUI's own memory figures.

    On a GPU every other model can be evicted, so the K/V cache and the working set are compared with the device's
    total memory less the student's ``weights`` (bytes); the latents are kept on ComfyUI's intermediate device (RAM unless
    --gpu-only) and compared with what is free there. On CPU everything is compared with the free RAM.
    """
    out = model_management.intermediate_device()
    if device.type == "cpu":
        check_budget(need, model_management.get_free_memory(device), where="this machine's RAM", lower=LOWER)
        return
    on_device = MemoryNeed(cache=need.cache, working=need.working, latents=need.latents if out == device else 0)
    check_budget(on_device, model_management.get_total_memory(device) - weights, where=f"the GPU ({device})", lower=LOWER)
    if out != device:
        check_budget(MemoryNeed(cache=0, working=0, latents=need.latents),
                     model_management.get_free_memory(out), where="this machine's RAM (for the latents)",
                     lower="seconds or width / height")


def reserve_memory(handle: ModelHandle, student: Student, cache_bytes: int) -> None:
    """Tell ComfyUI's memory manager about the KV cache, which it cannot see, so it evicts other models first."""
    if handle.patcher is not None:
        model_management.load_models_gpu([handle.patcher], memory_required=cache_bytes)
        return
    weights = sum(p.numel() * p.element_size() for p in student.model.parameters())
    model_management.free_memory(cache_bytes + weights, student.model.device)


class LongRolloutSampler(io.ComfyNode):
    """Generate a long video chunk by chunk with constant memory, with progress, previews and cancellation."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="CF_LongRolloutSampler",
            display_name="Context Forcing Long Rollout Sampler",
            category=CATEGORY,
            description="Autoregressive few-step rollout: each 3-latent-frame chunk is denoised against the bounded "
                        "Slow-Fast Memory and committed to it; memory use stays constant however long the video. "
                        "Outputs a LATENT for VAE Decode (Wan) or Context Forcing Toy Decode (toy model) and the "
                        "memory trace for the Surprisal Inspector. Cancel stops it between chunks.",
            inputs=[
                CFModel.Input("model"),
                io.Float.Input("seconds", default=60.0, **limits(SECONDS), step=0.25,
                               tooltip="Video length; rounded up to whole chunks (4 latent frames per second)."),
                io.Int.Input("seed", default=0, **limits(SEED), control_after_generate=True),
                io.Int.Input("steps", default=4, **limits(STEPS), tooltip="Denoising steps per chunk (students: 4)."),
                io.Float.Input("shift", default=5.0, **limits(SHIFT), step=0.1,
                               tooltip="Timestep shift of the step list (students are trained with 5)."),
                io.Int.Input("width", default=832, **limits(PIXELS), step=PIXEL_MULTIPLE, tooltip="Wan models only."),
                io.Int.Input("height", default=480, **limits(PIXELS), step=PIXEL_MULTIPLE, tooltip="Wan models only."),
                io.String.Input("prompt", multiline=True, default=DEFAULT_PROMPT,
                                tooltip="For models with a bundled text encoder (the toy model); a connected "
                                        "conditioning is used instead."),
                CFMemory.Input("memory", optional=True,
                               tooltip="Default: the memory the loaded student was trained with when the loader "
                                       "recognises its family, else the Context Forcing preset."),
                io.Conditioning.Input("conditioning", optional=True,
                                      tooltip="Wan models: CLIP Text Encode with the umT5-XXL encoder."),
                CFSchedule.Input("schedule", optional=True, tooltip="Prompt switches (Context Forcing Prompt Switch)."),
                io.Boolean.Input("compile_attention", default=False, optional=True,
                                 tooltip="Run the memory's attention core under torch.compile: the first chunks wait "
                                         "for the compiler (tens of seconds), later ones may run faster. Same video "
                                         "within float tolerance."),
            ],
            outputs=[io.Latent.Output(display_name="latent"), CFTrace.Output(display_name="memory_trace")],
            hidden=[io.Hidden.unique_id],
        )

    @classmethod
    async def validate_inputs(cls, seconds: float) -> bool | str:
        # One named input (ComfyUI repeats a custom error once per named input and skips its own range check for
        # them): seconds, because NaN passes ComfyUI's min / max comparisons; the memory budget of the whole
        # graph is attached to it too (the length is what to lower first). steps, seed, width and height are
        # range-checked by ComfyUI from the same bounds; shift NaN and width / height not multiples of 16 are
        # refused on their own inputs when the prompt is queued (input_checks.py); execute checks all of it again,
        # and the budget with the model actually connected.
        checked = check_finite_input("Long Rollout Sampler", "seconds", seconds, SECONDS)
        graph, node_id = QUEUED_GRAPH.get(), getattr(getattr(cls, "hidden", None), "unique_id", None)
        if checked is not True or graph is None or node_id not in graph:
            return checked
        try:  # header reads and model_management calls: off the event loop, capped in time
            refusal = await asyncio.wait_for(asyncio.to_thread(budget_refusal, graph, node_id), INSPECT_SECONDS)
        except TimeoutError:
            return True  # execute checks the budget before allocating
        return refusal or True

    @classmethod
    def execute(cls, model: ModelHandle, seconds: float, seed: int, steps: int, shift: float, width: int, height: int,
                prompt: str, memory: MemoryConfig | None = None, conditioning: list | None = None,
                schedule: tuple[ScheduledPrompt, ...] | None = None, compile_attention: bool = False) -> io.NodeOutput:
        refusal = (wrong_connection(NAME, "model", model, ModelHandle, "Load Context Forcing Model")
                   or wrong_connection(NAME, "memory", memory, (MemoryConfig, type(None)), "Context Forcing Memory Config")
                   or (None if schedule is None or is_schedule(schedule) else
                       f"{NAME}: input 'schedule' must be connected to Context Forcing Prompt Switch")
                   or (None if conditioning is None or is_conditioning(conditioning) else
                       f"{NAME}: input 'conditioning' must be connected to CLIP Text Encode"))
        if refusal:
            return io.NodeOutput(None, None, block_execution=refusal)
        try:  # input mistakes that only show once the inputs are connected: a message for the artist, no traceback
            SHIFT.check("shift", shift)
            student = model.resolve()
            memory = memory_for(student, memory)  # the family's chunk size; its memory when none is connected
            frames = student.latent_frames(seconds, memory.chunk_frames)
            latent_size = student.latent_size(width, height)
            need = student.rollout_need(memory, latent_size, frames)
            weights = sum(p.numel() * p.element_size() for p in student.model.parameters())
            check_memory(need, student.model.device, weights)  # before anything is allocated
            texts = build_schedule(student, prompt, conditioning, tuple(schedule or ()))
        except ValueError as err:
            return io.NodeOutput(None, None, block_execution=f"Long Rollout Sampler: {err}")
        reserve_memory(model, student, need.cache + need.working)
        if model.patcher is not None:  # ComfyUI may have moved the MODEL's weights while making room: wrap them anew
            student = model.resolve()
            texts = build_schedule(student, prompt, conditioning, tuple(schedule or ()))
        total = frames // memory.chunk_frames
        bar = comfy.utils.ProgressBar(total)
        out_device = model_management.intermediate_device()
        chunks: list[Tensor] = []
        trace = MemoryTrace()
        rollout = stream(student.model, texts, num_latent_frames=frames, memory=memory, seed=seed,
                         steps=step_list(steps), shift=shift, latent_size=latent_size, budget_bytes=math.inf,
                         interrupt=model_management.throw_exception_if_processing_interrupted,  # budget checked above
                         compile_attention=bool(compile_attention))
        try:
            for chunk in rollout:
                if not torch.isfinite(chunk.latents).all():  # never a "successful" video of NaN
                    raise NonFiniteLatents(f"{NAME}: chunk {chunk.index} came out with NaN or infinite values (a "
                                           f"broken checkpoint, or float16 overflow: try dtype bfloat16 or float32)")
                chunks.append(chunk.latents.to(out_device))
                trace.chunks.append(chunk.step)
                bar.update_absolute(chunk.index + 1, total, preview(student, chunk.latents))
        except BaseException as err:
            chunks.clear()  # free the partial video and, through close(), the KV cache before ComfyUI reports
            rollout.close()
            model_management.soft_empty_cache()
            if isinstance(err, NonFiniteLatents):
                return io.NodeOutput(None, None, block_execution=str(err))
            raise
        latents = student.raw_latents(torch.cat(chunks, dim=2))  # (1, C, F, H, W) codec / VAE space
        return io.NodeOutput({"samples": latents}, trace)


register_graph_handler()
