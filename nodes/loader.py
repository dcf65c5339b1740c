"""Load Context Forcing Model."""

from __future__ import annotations

import os

import folder_paths
import torch
from comfy import model_management
from comfy_api.v0_0_2 import io

from context_forcing_core.models.loading import inspect_checkpoint
from context_forcing_core.student import BUNDLED_TOY_STUDENT, load_student

from .types import CATEGORY, CFModel, ModelHandle

BUNDLED = "toy-student (bundled)"
FOLDER = "context_forcing"
DTYPES = {"default": None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

if FOLDER not in folder_paths.folder_names_and_paths:
    folder_paths.add_model_folder_path(FOLDER, os.path.join(folder_paths.models_dir, FOLDER))


def checkpoint_names() -> list[str]:
    """The bundled toy student, then files in models/context_forcing and models/diffusion_models."""
    names = [BUNDLED]
    for folder in (FOLDER, "diffusion_models"):
        names += [n for n in folder_paths.get_filename_list(folder) if n not in names]
    return names


def checkpoint_path(name: str) -> str:
    """Full path of a name offered by :func:`checkpoint_names`."""
    if name == BUNDLED:
        return str(BUNDLED_TOY_STUDENT)
    for folder in (FOLDER, "diffusion_models"):
        path = folder_paths.get_full_path(folder, name)
        if path is not None:
            return path
    raise FileNotFoundError(f"no model file named {name!r} in models/{FOLDER} or models/diffusion_models")


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
                io.Combo.Input("ckpt_name", options=checkpoint_names(), default=BUNDLED,
                               tooltip="Student checkpoint; ignored when a MODEL is connected."),
                io.Combo.Input("dtype", options=list(DTYPES), default="default",
                               tooltip="Weight dtype; default is float32 on CPU, bfloat16 on GPU."),
                io.Model.Input("model", optional=True,
                               tooltip="Optional: a Wan2.1 MODEL from Load Diffusion Model whose weights to reuse."),
            ],
            outputs=[CFModel.Output(display_name="cf_model")],
        )

    @classmethod
    def validate_inputs(cls, ckpt_name: str) -> bool | str:
        try:
            inspect_checkpoint(checkpoint_path(ckpt_name))
        except (OSError, ValueError) as err:
            return f"Load Context Forcing Model: {err}"
        return True

    @classmethod
    def execute(cls, ckpt_name: str, dtype: str, model: object | None = None) -> io.NodeOutput:
        if model is not None:
            handle = ModelHandle(patcher=model)
            try:
                handle.resolve()  # only wraps the weights; refuses a MODEL that is not a Wan2.1 text-to-video DiT
            except (AttributeError, ValueError) as err:
                return io.NodeOutput(None, block_execution=f"Load Context Forcing Model: the connected MODEL is not "
                                                           f"a Wan2.1 T2V model ({err})")
            return io.NodeOutput(handle)
        device = model_management.get_torch_device()
        student = load_student(checkpoint_path(ckpt_name), dtype=resolve_dtype(dtype, device), device=device)
        return io.NodeOutput(ModelHandle(student=student))
