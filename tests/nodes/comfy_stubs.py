"""Just enough of ComfyUI's modules for node unit tests in the test venv (the real server is tested separately).

Importing this module installs the stubs in ``sys.modules`` unless a real ComfyUI is importable. The stubs keep
what the nodes pass to ComfyUI (progress ticks, previews, output values) so tests can check it.
"""

from __future__ import annotations

import os
import sys
import tempfile
import types
from pathlib import Path

import torch

PROGRESS: list[tuple[int, int, object]] = []
"""(value, total, preview) of every ProgressBar.update_absolute."""
INTERRUPT = {"after_ticks": None}
"""Raise InterruptProcessingException from the interrupt check once this many ticks were recorded."""
MODELS = Path(tempfile.mkdtemp(prefix="cf-models-"))
OUTPUT = Path(tempfile.mkdtemp(prefix="cf-output-"))
FREE_MEMORY = {"bytes": 8 * 1024**3}
"""What the stubbed model management reports as free (RAM or VRAM), in bytes."""


class InterruptProcessingException(Exception):
    pass


def _module(name: str, **attrs: object) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    return mod


class _Sock:
    """A socket type: Input/Output constructors record their arguments."""

    def __init__(self, io_type: str) -> None:
        self.io_type = io_type

        class Input:
            def __init__(s, id: str, **kw: object) -> None:
                s.id, s.kw = id, kw

        class Output:
            def __init__(s, id: str | None = None, **kw: object) -> None:
                s.id, s.kw = id, kw

        self.Input, self.Output = Input, Output


class _NodeOutput:
    def __init__(self, *args: object, ui: object = None, block_execution: str | None = None, **_: object) -> None:
        self.args, self.ui, self.block_execution = args, ui, block_execution


class _Schema:
    def __init__(self, **kw: object) -> None:
        self.__dict__.update(kw)


class _UIOutput:
    def __init__(self, value: object, **_: object) -> None:
        self.value = value


class _PreviewImage(_UIOutput):
    def as_dict(self) -> dict:
        return {"images": [{"shape": tuple(self.value.shape)}]}


class _PreviewText(_UIOutput):
    def as_dict(self) -> dict:
        return {"text": (self.value,)}


def _interrupt_check() -> None:
    if INTERRUPT["after_ticks"] is not None and len(PROGRESS) >= INTERRUPT["after_ticks"]:
        raise InterruptProcessingException()


class _ProgressBar:
    def __init__(self, total: int) -> None:
        self.total, self.current = total, 0

    def update_absolute(self, value: int, total: int | None = None, preview: object = None) -> None:
        self.current = value
        PROGRESS.append((value, total or self.total, preview))

    def update(self, value: int) -> None:
        self.update_absolute(self.current + value)


class _WanDecoder(torch.nn.Module):
    """Causal like Wan's: a latent frame and the one before it (kept in ``feat_cache[0]``) -> 1, then 4 frames."""

    def __init__(self) -> None:
        super().__init__()
        self.now, self.before = torch.nn.Conv3d(16, 12, 1), torch.nn.Conv3d(16, 12, 1, bias=False)

    def forward(self, x: torch.Tensor, feat_cache: list, feat_idx: list[int]) -> torch.Tensor:
        prev = feat_cache[0]
        y = self.now(x) + (self.before(prev) if prev is not None else 0)  # (1, 12, 1, h, w)
        feat_cache[0] = x
        y = torch.tanh(y)[:, :, 0].unflatten(1, (3, 4)).repeat_interleave(8, -1).repeat_interleave(8, -2)
        return y[:, :, :1] if prev is None else y  # (1, 3, n, 8h, 8w)


class _WanVAE(torch.nn.Module):
    """The interface of comfy.ldm.wan.vae.WanVAE that the streaming decode node uses, at toy size."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv2, self.decoder = torch.nn.Conv3d(16, 16, 1), _WanDecoder()

    def decode(self, z: torch.Tensor) -> torch.Tensor:  # the whole-video loop of WanVAE.decode
        cache: list = [None]
        x = self.conv2(z)
        return torch.cat([self.decoder(x[:, :, i:i + 1], feat_cache=cache, feat_idx=[0]) for i in range(z.shape[2])], 2)


def install() -> None:
    try:
        import comfy_api.v0_0_2  # noqa: F401  (a real ComfyUI on the path: use it)
        return
    except ImportError:
        pass
    io = types.SimpleNamespace(
        ComfyNode=type("ComfyNode", (), {}), Schema=_Schema, NodeOutput=_NodeOutput, Custom=_Sock,
        Hidden=types.SimpleNamespace(unique_id="UNIQUE_ID"),
        **{name: _Sock(name.upper()) for name in ("Combo", "Int", "Float", "String", "Boolean", "Model",
                                                   "Conditioning", "Latent", "Image", "Vae")},
        FolderType=types.SimpleNamespace(output="output"),
    )
    ui = types.SimpleNamespace(PreviewImage=_PreviewImage, PreviewText=_PreviewText,
                               SavedResult=lambda filename, subfolder, type: {"filename": filename,
                                                                              "subfolder": subfolder, "type": type},
                               PreviewVideo=lambda results: types.SimpleNamespace(as_dict=lambda: {"images": results}))
    _module("comfy_api")
    _module("comfy_api.v0_0_2", io=io, ui=ui, ComfyExtension=type("ComfyExtension", (), {}))
    folders: dict[str, list[Path]] = {"diffusion_models": [MODELS / "diffusion_models"]}

    def add_model_folder_path(name: str, path: str) -> None:
        folders.setdefault(name, []).append(Path(path))

    def get_filename_list(name: str) -> list[str]:  # as ComfyUI: files in subfolders too, as "sub/name"
        return sorted(p.relative_to(d).as_posix() for d in folders.get(name, []) if d.exists()
                      for p in d.rglob("*") if p.is_file())

    def get_full_path(name: str, filename: str) -> str | None:
        hits = [d / filename for d in folders.get(name, []) if (d / filename).exists()]
        return str(hits[0]) if hits else None

    def get_save_image_path(prefix: str, output_dir: str) -> tuple[str, str, int, str, str]:
        """ComfyUI's rule: the folder must stay in the output folder; the counter follows existing files."""
        subfolder, name = os.path.dirname(os.path.normpath(prefix)), os.path.basename(os.path.normpath(prefix))
        folder = os.path.join(output_dir, subfolder)
        if os.path.commonpath((output_dir, os.path.abspath(folder))) != output_dir:
            raise Exception("Saving image outside the output folder is not allowed.")
        os.makedirs(folder, exist_ok=True)
        return folder, name, 1 + sum(f.startswith(name + "_") for f in os.listdir(folder)), subfolder, prefix

    _module("folder_paths", models_dir=str(MODELS), folder_names_and_paths=folders,
            get_output_directory=lambda: str(OUTPUT), get_save_image_path=get_save_image_path,
            add_model_folder_path=add_model_folder_path, get_filename_list=get_filename_list,
            get_full_path=get_full_path, get_folder_paths=lambda name: [str(d) for d in folders.get(name, [])])
    mm = types.SimpleNamespace(
        get_torch_device=lambda: torch.device("cpu"), intermediate_device=lambda: torch.device("cpu"),
        throw_exception_if_processing_interrupted=_interrupt_check, soft_empty_cache=lambda: None,
        free_memory=lambda *a, **k: None, load_models_gpu=lambda *a, **k: None,
        get_free_memory=lambda *a, **k: FREE_MEMORY["bytes"], get_total_memory=lambda *a, **k: FREE_MEMORY["bytes"],
        InterruptProcessingException=InterruptProcessingException, OOM_EXCEPTION=torch.cuda.OutOfMemoryError,
    )
    comfy = _module("comfy", model_management=mm)
    comfy.utils = _module("comfy.utils", ProgressBar=_ProgressBar)
    sys.modules["comfy.model_management"] = mm  # type: ignore[assignment]
    comfy.latent_formats = _module("comfy.latent_formats", Wan21=comfy_latent_formats().Wan21)
    _module("comfy.ldm")
    _module("comfy.ldm.wan")
    _module("comfy.ldm.wan.vae", WanVAE=_WanVAE, count_conv3d=lambda decoder: 1)


def comfy_latent_formats() -> types.ModuleType:
    """ComfyUI's own comfy/latent_formats.py (it imports only torch), from the provisioned ComfyUI 0.3.75."""
    import importlib.util

    from tools.comfy_server import provision

    spec = importlib.util.spec_from_file_location("_comfy_latent_formats", provision() / "comfy" / "latent_formats.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


install()
