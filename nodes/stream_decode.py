"""Context Forcing Streaming Decode: Wan latents -> a video file, one latent frame at a time (bounded memory)."""

from __future__ import annotations

import os

import comfy.utils
import folder_paths
import torch
from comfy import model_management
from comfy_api.v0_0_2 import io, ui

from context_forcing_core.diffusion.settings import FPS
from context_forcing_core.stream_decode import FrameDecoder, Mp4Sink, PngSink, stream_decode
from context_forcing_core.student import WAN_FPS

from .types import CATEGORY, combo, limits, shown

NAME = "Streaming Decode"
FORMATS = ["mp4", "png frames"]


def _joined(out: torch.Tensor | list | tuple) -> torch.Tensor:
    """A decoder's frames as one tensor: later ComfyUI versions return a list of frame groups (joined on time)."""
    return torch.cat(out, dim=2) if isinstance(out, (list, tuple)) else out


def wan_frame_decoder(vae: object, check: torch.Tensor | None = None) -> FrameDecoder:
    """The Wan 2.1 VAE ComfyUI loaded, as a stateful one-latent-frame decoder.

    It runs the loop of ``WanVAE.decode`` (``conv2``, then the decoder on each latent frame with one carried feature
    cache) a frame per call, so the frames equal core VAE Decode's. ``check`` (1, 16, k, h, w), the video's first
    latent frames: they are decoded both ways first, and a ComfyUI whose VAE internals decode differently (the helper
    and the decoder's output changed after 0.3.75) is refused instead of streaming wrong frames. Raises ValueError for
    any other VAE or such a mismatch.
    """
    import comfy.ldm.wan.vae as wan_vae  # on use: the node list must load whatever ComfyUI's VAE module holds

    model = getattr(vae, "first_stage_model", None)
    count = getattr(wan_vae, "count_conv3d", None) or getattr(wan_vae, "count_cache_layers", None)
    if not isinstance(model, wan_vae.WanVAE):
        raise ValueError(f"{NAME} needs the Wan 2.1 VAE (wan_2.1_vae.safetensors), got "
                         f"{type(model).__name__ if model is not None else type(vae).__name__}")
    if count is None:
        raise ValueError("this ComfyUI's Wan VAE has no cache-layer count the decoder loop needs; use VAE Decode")
    device, dtype = vae.device, vae.vae_dtype
    if check is not None:  # weights placed as core VAE Decode places them, with one latent frame's worth of room
        model_management.load_models_gpu([vae.patcher], memory_required=vae.memory_used_decode(
            (1, 16, 1, *check.shape[3:]), dtype), force_full_load=getattr(vae, "disable_offload", False))

    def stepper() -> FrameDecoder:
        cache: list = [None] * count(model.decoder)

        def decode(z: torch.Tensor) -> torch.Tensor:  # (1, 16, 1, h, w) -> (1, 3, n, 8h, 8w)
            out = _joined(model.decoder(model.conv2(z.to(device, dtype)), feat_cache=cache, feat_idx=[0]))
            return out.to(model_management.intermediate_device())

        return decode

    if check is not None:
        with torch.no_grad():
            step = stepper()
            parts = torch.cat([step(check[:, :, i:i + 1]) for i in range(check.shape[2])], dim=2).float()
            whole = _joined(model.decode(check.to(device, dtype))).float().cpu()
        if parts.shape != whole.shape or not torch.allclose(parts.cpu(), whole, atol=1e-3):
            raise ValueError("this ComfyUI's Wan VAE does not decode frame by frame as ComfyUI 0.3.75 does; use "
                             "VAE Decode")
    return stepper()


def refuse(message: str) -> io.NodeOutput:
    """Stop with ``message``: shown on this node (an output node's block is otherwise silent) and to any consumer."""
    text = f"{NAME}: {message}"
    return io.NodeOutput(None, ui=ui.PreviewText(text).as_dict(), block_execution=text)


class StreamingDecode(io.ComfyNode):
    """LATENT (Wan) + VAE -> a video file in the output folder, written as it is decoded."""

    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="CF_StreamingDecode",
            display_name="Context Forcing Streaming Decode",
            category=CATEGORY,
            description="Decodes Wan latents with the Wan 2.1 VAE one latent frame at a time and writes the video to "
                        "the output folder as it goes: memory stays that of one frame, however long the video "
                        "(core VAE Decode holds every frame at once). Same frames as VAE Decode. 'png frames' writes "
                        "a lossless numbered sequence instead of an mp4.",
            inputs=[
                io.Latent.Input("samples"),
                io.Vae.Input("vae"),
                io.String.Input("filename_prefix", default="context_forcing/video"),
                combo("format", FORMATS, default=FORMATS[0]),
                io.Int.Input("fps", default=WAN_FPS, **limits(FPS)),
            ],
            outputs=[io.String.Output(display_name="path")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, samples: dict, vae: object, filename_prefix: str, format: str, fps: int) -> io.NodeOutput:
        latents = samples.get("samples") if isinstance(samples, dict) else None
        if not isinstance(latents, torch.Tensor) or latents.ndim != 5:
            shape = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            return refuse(f"'samples' must be a video LATENT (B, 16, T, h, w), got {shape}")
        if latents.shape[2] == 0:
            return refuse("'samples' holds no latent frames")
        if latents.shape[1] != 16:
            return refuse(f"the Wan 2.1 VAE takes 16-channel latents, got {latents.shape[1]} (toy-model latents go "
                          "through Context Forcing Toy Decode)")
        try:
            folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(
                filename_prefix, folder_paths.get_output_directory())
        except OSError as err:  # a name the file system refuses
            return refuse(f"cannot use filename_prefix {shown(filename_prefix)!r}: {err.strerror or err}")
        except Exception:  # ComfyUI raises a bare Exception for a prefix that leaves the output folder
            return refuse(f"filename_prefix {shown(filename_prefix)!r} must stay inside the output folder")
        bar = comfy.utils.ProgressBar(latents.shape[0] * latents.shape[2])

        def tick(done: int, total: int) -> None:
            model_management.throw_exception_if_processing_interrupted()  # Cancel: the sink is aborted, no file left
            bar.update(1)

        results, paths = [], []
        for b in range(latents.shape[0]):
            file = f"{name}_{counter + b:05}_" + (".mp4" if format == "mp4" else "")
            target = os.path.join(folder, file)
            try:
                decoder = wan_frame_decoder(vae, check=latents[:1, :, :2] if b == 0 else None)
                sink = Mp4Sink(target, fps=fps) if format == "mp4" else PngSink(target)
                stream_decode(latents[b:b + 1], decoder, sink, on_frame=tick)
            except OSError as err:  # a name too long for the file system, a full disk: no server path in the message
                return refuse(f"cannot write {shown(os.path.join(subfolder, file))!r} in the output folder: "
                              f"{err.strerror or err}")
            except ValueError as err:  # not a Wan 2.1 VAE, or one that decodes differently; the mp4 writer's
                return refuse(str(err))
            except model_management.OOM_EXCEPTION:
                return refuse(f"out of memory decoding one latent frame of {latents.shape[4] * 8}x"
                              f"{latents.shape[3] * 8} pixels")
            results.append(ui.SavedResult(file, subfolder, io.FolderType.output))
            paths.append(os.path.join(subfolder, file))  # as the output folder shows it, no server path
        preview = ui.PreviewVideo(results).as_dict() if format == "mp4" else {"text": [f"wrote {p}" for p in paths]}
        return io.NodeOutput("\n".join(paths), ui=preview)  # paths relative to the output folder
