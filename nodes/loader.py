"""Load Context Forcing Model."""

from __future__ import annotations

import asyncio
import os

import folder_paths
import torch
from comfy import model_management
from comfy_api.v0_0_2 import io, ui

from context_forcing_core.models.family import NOT_RECOGNISED
from context_forcing_core.models.loading import PICKLE_SUFFIXES, inspect_checkpoint_cached
from context_forcing_core.models.lora import LORA_STRENGTH
from context_forcing_core.student import BUNDLED_TOY_STUDENT, load_student

from .types import CATEGORY, CFModel, ModelHandle, combo, limits, shown

BUNDLED = "toy-student (bundled)"
FOLDER = "context_forcing"
DTYPES = {"default": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
SUFFIXES = (".safetensors", *PICKLE_SUFFIXES)
"""File types the loader reads; other files in the model folders are not offered."""
FOLDERS = (FOLDER, "diffusion_models")
NO_LORA = "none"
LORA_FOLDER = "loras"
INSPECT_SECONDS = 3.0
"""Longest a validation waits for a checkpoint check (run in a worker thread, never on the server's event loop)."""

if FOLDER not in folder_paths.folder_names_and_paths:
    folder_paths.add_model_folder_path(FOLDER, os.path.join(folder_paths.models_dir, FOLDER))


def checkpoint_names() -> list[str]:
    """The bundled toy student, then the loadable files (:data:`SUFFIXES`) in models/context_forcing and
    models/diffusion_models.
    """
    names = [BUNDLED]
    for folder in FOLDERS:
        names += [n for n in folder_paths.get_filename_list(folder) if n.lower().endswith(SUFFIXES) and n not in names]
    return names


def checkpoint_path(name: str) -> str:
    """Full path of a name offered by :func:`checkpoint_names` (only those: no other file, no path outside)."""
    if name == BUNDLED:
        return str(BUNDLED_TOY_STUDENT)
    path = offered_path(name, checkpoint_names(), FOLDERS)
    if path is None:
        raise FileNotFoundError(f"no model file named {shown(name)!r} in models/{FOLDER} or models/diffusion_models "
                                f"(files ending in {', '.join(SUFFIXES)})")
    return path


def offered_path(name: object, offered: list[str], folders: tuple[str, ...]) -> str | None:
    """Full path of ``name`` if it is one of the ``offered`` dropdown names, found in ``folders``; else None.

    Only offered names resolve: no other file, no path outside the model folders.
    """
    if isinstance(name, str) and name in offered:
        for folder in folders:
            path = folder_paths.get_full_path(folder, name)
            if path is not None:
                return path
    return None


def relative_message(message: str, name: str, path: str) -> str:
    """An error message with the server's absolute paths replaced by the name shown in the dropdown."""
    message = message.replace(path, name)
    for folder in FOLDERS:
        for root in folder_paths.get_folder_paths(folder):
            message = message.replace(str(root).rstrip(os.sep) + os.sep, f"models/{folder}/")
    return message.replace(str(BUNDLED_TOY_STUDENT), BUNDLED)


def lora_names() -> list[str]:
    """"none", then the loadable files (:data:`SUFFIXES`) in models/loras."""
    return [NO_LORA] + [n for n in folder_paths.get_filename_list(LORA_FOLDER) if n.lower().endswith(SUFFIXES)]


def lora_path(name: str) -> str:
    """Full path of a LoRA offered by :func:`lora_names` (only those)."""
    path = offered_path(name, lora_names()[1:], (LORA_FOLDER,))  # not "none"
    if path is None:
        raise FileNotFoundError(f"no LoRA file named {shown(name)!r} in models/{LORA_FOLDER}")
    return path


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """'default' is float32 on CPU (fast there) and bfloat16 on GPUs."""
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {name!r}; choose one of {', '.join(DTYPES)}")
    return DTYPES[name] or (torch.float32 if device.type == "cpu" else torch.bfloat16)


class LoadModel(io.ComfyNode):
    """Load a causal Context Forcing student, or reuse the weights of a MODEL from Load Diffusion Model."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="CF_LoadModel",
            display_name="Load Context Forcing Model",
            category=CATEGORY,
            description="Loads a causal Wan2.1 student (safetensors, .pt, diffusers or training checkpoints) from "
                        "models/context_forcing or models/diffusion_models, or the bundled toy student. Connect a "
                        "MODEL to reuse weights ComfyUI already holds instead of loading them twice.",
            inputs=[
                combo("ckpt_name", checkpoint_names(), default=BUNDLED,
                      tooltip="Student checkpoint; ignored when a MODEL is connected."),
                combo("dtype", list(DTYPES), default="default",
                      tooltip="Weight dtype; default is float32 on CPU, bfloat16 on GPU."),
                io.Model.Input("model", optional=True,
                               tooltip="Optional: a Wan2.1 MODEL from Load Diffusion Model whose weights to reuse."),
                combo("lora_name", lora_names(), default=NO_LORA, optional=True,
                      tooltip="A LoRA from models/loras merged into the student's weights (PEFT, LongLive's "
                              "lora.pt, ComfyUI / kohya Wan LoRAs); ignored when a MODEL is connected (apply "
                              "LoRAs to it with LoraLoaderModelOnly instead)."),
                io.Float.Input("lora_strength", default=1.0, **limits(LORA_STRENGTH), step=0.05, optional=True,
                               tooltip="Multiplies the LoRA's update (1: as trained)."),
            ],
            outputs=[CFModel.Output(display_name="cf_model")],
        )

    @classmethod
    async def validate_inputs(cls, ckpt_name: str) -> bool | str:
        # ComfyUI calls this on its event loop: the check runs in a worker thread, is capped in time here and in
        # size by the core (header-only, bounded), and is remembered per (path, mtime, size).
        try:
            path = checkpoint_path(ckpt_name)
        except FileNotFoundError as err:
            return f"Load Context Forcing Model: {err}"
        try:
            await asyncio.wait_for(asyncio.to_thread(inspect_checkpoint_cached, path), INSPECT_SECONDS)
        except TimeoutError:
            return (f"Load Context Forcing Model: checking {ckpt_name!r} takes longer than {INSPECT_SECONDS:g} s "
                    f"(a large pickled file?); the check goes on in the background, queue the prompt again in a "
                    f"moment, or convert the file to .safetensors")
        except (OSError, ValueError) as err:
            return f"Load Context Forcing Model: {relative_message(str(err), ckpt_name, path)}"
        return True

    @classmethod
    def execute(cls, ckpt_name: str, dtype: str, model: object | None = None, lora_name: str = NO_LORA,
                lora_strength: float = 1.0) -> io.NodeOutput:
        if model is not None:
            handle = ModelHandle(patcher=model)
            try:
                handle.resolve()  # only wraps the weights; refuses a MODEL that is not a Wan2.1 text-to-video DiT
            except (AttributeError, ValueError) as err:
                return io.NodeOutput(None, block_execution=f"Load Context Forcing Model: the connected MODEL is not "
                                                           f"a Wan2.1 T2V model ({err})")
            return io.NodeOutput(handle, ui=ui.PreviewText(
                "A MODEL from ComfyUI: sampled with its weights as ComfyUI patched them (LoRA and other weight "
                f"patches included); {NOT_RECOGNISED.summary()}").as_dict())
        device = model_management.get_torch_device()
        try:
            path = checkpoint_path(ckpt_name)
            lora = []
            if lora_name != NO_LORA:
                LORA_STRENGTH.check("lora_strength", lora_strength)
                lora = [(lora_path(lora_name), float(lora_strength))]
        except (FileNotFoundError, ValueError) as err:
            return io.NodeOutput(None, block_execution=f"Load Context Forcing Model: {err}")
        try:
            student = load_student(path, dtype=resolve_dtype(dtype, device), device=device, lora=lora)
        except (OSError, ValueError) as err:
            message = relative_message(str(err), ckpt_name, path)
            if lora:
                message = message.replace(lora[0][0], lora_name)
            return io.NodeOutput(None, block_execution=f"Load Context Forcing Model: {message}")
        return io.NodeOutput(ModelHandle(student=student), ui=ui.PreviewText(student.family.summary()).as_dict())
