"""Wan students and their video in a real ComfyUI 0.3.75: LoRAs merged by the loader and applied by
ComfyUI's own LoRA loader, and Streaming Decode against core VAE Decode. Every model file is written by the tests
(tiny random weights in the real formats), never committed.
"""

from __future__ import annotations

import copy
import json
import subprocess
import time
from pathlib import Path

import imageio_ffmpeg
import torch
from PIL import Image
from real_server import (
    BUNDLED,
    RUN_SECONDS,
    base_prompt,
    errors_of,
    run_and_collect,
    server,
    shows_traceback,
)
from safetensors.torch import load_file, save_file

from context_forcing_core.models.config import WanConfig
from context_forcing_core.models.loading import save_model
from context_forcing_core.models.wan import WanModel
from context_forcing_core.student import BUNDLED_TOY_STUDENT
from tools.comfy_server import ComfyServer

REPO = Path(__file__).resolve().parents[2]
assert server  # the module's real ComfyUI (fixture)


def test_a_lora_runs_merged_and_a_bad_one_is_refused_naming_its_key(server: ComfyServer):
    folder = server.base / "models" / "loras"
    folder.mkdir(parents=True, exist_ok=True)
    dim = load_file(BUNDLED_TOY_STUDENT)["blocks.0.self_attn.q.weight"].shape[0]
    g = torch.Generator().manual_seed(0)
    good = {"diffusion_model.blocks.0.self_attn.q.lora_down.weight": 0.1 * torch.randn(2, dim, generator=g),
            "diffusion_model.blocks.0.self_attn.q.lora_up.weight": 0.1 * torch.randn(dim, 2, generator=g)}
    save_file(good, folder / "toy_lora.safetensors")
    save_file({k.replace("blocks.0.", "blocks.99."): v for k, v in good.items()}, folder / "bad_lora.safetensors")
    offered = server.get("/object_info/CF_LoadModel")["CF_LoadModel"]["input"]["optional"]["lora_name"][0]
    assert offered[0] == "none" and {"toy_lora.safetensors", "bad_lora.safetensors"} <= set(offered)
    prompt = base_prompt()
    prompt["1"]["inputs"].update(lora_name="toy_lora.safetensors", lora_strength=0.8)
    status, answer, run = run_and_collect(server, prompt, RUN_SECONDS)
    assert status == 200 and run[-1][0] == "execution_success", run[-3:]
    prompt["1"]["inputs"]["lora_name"] = "bad_lora.safetensors"
    status, answer, run = run_and_collect(server, prompt, RUN_SECONDS)
    errors = [data for kind, data in run if kind == "execution_error"]
    assert status == 200 and errors and not shows_traceback(run), run[-3:]
    message = errors[0]["exception_message"]
    assert "bad_lora.safetensors" in message and "'blocks.99.self_attn.q'" in message and "matches nothing" in message
    assert str(server.base) not in message and server.alive()
    prompt["1"]["inputs"].update(lora_name="toy_lora.safetensors", lora_strength=float("nan"))
    status, answer = server.queue(prompt)
    assert status == 400 and [n for n, _ in errors_of(answer)["1"]] == ["lora_strength"], answer


def test_streaming_decode_equals_core_vae_decode_and_writes_the_mp4(server: ComfyServer):

    vae_file = server.base / "models" / "vae" / "tiny_wan_vae.safetensors"
    vae_file.parent.mkdir(parents=True, exist_ok=True)
    # a random Wan 2.1 VAE of the real architecture at width 8, written by ComfyUI's own class
    subprocess.run([str(server.python), "-m", "benchmarks.stream_decode", "--write-vae", str(vae_file), "--dim", "8"],
                   cwd=REPO, check=True, timeout=120)
    g = torch.Generator().manual_seed(1)
    save_file({"latent_tensor": torch.randn(1, 16, 5, 4, 6, generator=g), "latent_format_version_0": torch.tensor([])},
              server.base / "input" / "cf_wan.latent")
    decode = {"samples": ["1", 0], "vae": ["2", 0], "fps": 16}
    prompt = {
        "1": {"class_type": "LoadLatent", "inputs": {"latent": "cf_wan.latent"}},
        "2": {"class_type": "VAELoader", "inputs": {"vae_name": "tiny_wan_vae.safetensors"}},
        "3": {"class_type": "VAEDecode", "inputs": {"samples": ["1", 0], "vae": ["2", 0]}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "core/frame"}},
        "5": {"class_type": "CF_StreamingDecode", "inputs": decode | {"filename_prefix": "stream/png",
                                                                      "format": "png frames"}},
        "6": {"class_type": "CF_StreamingDecode", "inputs": decode | {"filename_prefix": "stream/mp4",
                                                                      "format": "mp4"}},
    }
    status, answer, run = run_and_collect(server, prompt, RUN_SECONDS)
    assert status == 200 and run[-1][0] == "execution_success", (answer, run[-3:], server.log_tail())
    out = server.base / "output"
    core = sorted((out / "core").glob("frame_*.png"))
    streamed = sorted((out / "stream" / "png_00001_").glob("frame_*.png"))
    assert len(core) == len(streamed) == 1 + 4 * 4  # 5 latent frames: 1, then 4 video frames each

    for a, b in zip(core, streamed):
        assert Image.open(a).tobytes() == Image.open(b).tobytes(), (a.name, b.name)  # bit-identical frames
    assert len({Image.open(f).tobytes() for f in core}) > 1  # a video, not one repeated frame
    mp4 = out / "stream" / "mp4_00001_.mp4"
    reader = imageio_ffmpeg.read_frames(str(mp4))
    meta = next(reader)
    assert meta["size"] == (48, 32) and meta["fps"] == 16 and sum(1 for _ in reader) == 17
    assert not list((out / "stream").glob(".*partial"))
    # hostile inputs of the new node (the rules of test_real_comfyui.py): each answered fast, refused or blocked,
    # never a traceback
    hostile = [("filename_prefix", v) for v in ("../../escape", "/etc/x", "", "x" * 100_000, None, 5)]
    hostile += [("format", v) for v in ("avi", "", None, 3)] + [("fps", v) for v in (0, 121, float("nan"), "abc")]
    hostile += [("samples", v) for v in (["2", 0], ["5", 0], "not a link")] + [("vae", ["1", 0])]
    for name, value in hostile:
        bad = copy.deepcopy(prompt)
        bad["5"]["inputs"][name] = value
        started = time.monotonic()
        status, answer, run = run_and_collect(server, bad, RUN_SECONDS)
        assert time.monotonic() - started < RUN_SECONDS and not shows_traceback(answer) and not shows_traceback(run)
        assert str(server.base) not in json.dumps([answer, run], default=str), (name, value)
        shown = [d for kind, d in run if kind == "executed" and d.get("node") == "5"]
        said = bool(shown) and any("Streaming Decode: " in t for t in (shown[0].get("output") or {}).get("text", []))
        # ComfyUI runs the graph's other outputs when one output node's inputs are invalid (node_errors with 200)
        refused = status == 400 or "5" in answer.get("node_errors", {}) or said or any(
            kind == "execution_error" for kind, _ in run)
        may_run = name == "filename_prefix" and value not in ("../../escape", "/etc/x")  # a name inside output/
        assert refused or may_run, (name, value, answer, run[-2:])
    assert server.alive()


WAN_COMFY = WanConfig(dim=128, ffn_dim=64, freq_dim=256, num_layers=1, num_heads=1, in_channels=16, out_channels=16,
                      text_dim=4096, text_len=512)
"""The smallest Wan2.1 DiT ComfyUI's model detection accepts (heads = dim / 128, frequency width 256, umT5 width)."""


def test_comfyui_lora_patches_reach_the_sampler_equal_to_our_merge(server: ComfyServer):
    torch.manual_seed(0)
    model = WanModel(WAN_COMFY)
    with torch.no_grad():
        for p in model.parameters():  # every weight matters, so a wrong patch shows
            p.add_(0.05 * torch.randn_like(p))
    for folder in ("diffusion_models", "context_forcing"):
        save_model(model, server.base / "models" / folder / "tiny_wan.safetensors")
    g = torch.Generator().manual_seed(3)
    lora = {}  # ComfyUI / kohya format with alpha: W + strength * alpha / rank * up @ down
    for name, (rows, cols) in {"self_attn.q": (128, 128), "cross_attn.v": (128, 128), "ffn.0": (64, 128)}.items():
        key = f"diffusion_model.blocks.0.{name}"
        lora |= {f"{key}.lora_down.weight": 0.3 * torch.randn(4, cols, generator=g),
                 f"{key}.lora_up.weight": 0.3 * torch.randn(rows, 4, generator=g), f"{key}.alpha": torch.tensor(2.0)}
    (server.base / "models" / "loras").mkdir(parents=True, exist_ok=True)
    save_file(lora, server.base / "models" / "loras" / "tiny_wan_lora.safetensors")
    sampler = {"seconds": 0.75, "seed": 0, "steps": 2, "shift": 5.0, "width": 32, "height": 32, "prompt": "",
               "conditioning": ["c", 0], "compile_attention": False}

    def branch(tag: str, loader: dict) -> dict:
        return {f"{tag}1": {"class_type": "CF_LoadModel", "inputs": {"ckpt_name": BUNDLED, "dtype": "default"} | loader},
                f"{tag}2": {"class_type": "CF_LongRolloutSampler", "inputs": sampler | {"model": [f"{tag}1", 0]}},
                f"{tag}3": {"class_type": "SaveLatent", "inputs": {"samples": [f"{tag}2", 0],
                                                                   "filename_prefix": f"latents/lora_{tag}"}}}

    prompt = {
        "c": {"class_type": "CFTest_RandomConditioning", "inputs": {"seed": 0, "tokens": 8, "dim": 4096}},
        "u": {"class_type": "UNETLoader", "inputs": {"unet_name": "tiny_wan.safetensors", "weight_dtype": "default"}},
        "l": {"class_type": "LoraLoaderModelOnly", "inputs": {"model": ["u", 0], "lora_name": "tiny_wan_lora.safetensors",
                                                              "strength_model": 0.7}},
        **branch("patched", {"model": ["l", 0]}),  # ComfyUI's LoRA patches on its MODEL
        **branch("plain", {"model": ["u", 0]}),  # the same MODEL without them
        **branch("merged", {"ckpt_name": "tiny_wan.safetensors", "lora_name": "tiny_wan_lora.safetensors",
                            "lora_strength": 0.7}),  # our own loader and merge
    }
    status, answer, run = run_and_collect(server, prompt, RUN_SECONDS)
    assert status == 200 and run[-1][0] == "execution_success", (answer, run[-3:], server.log_tail())
    latents = {tag: load_file(server.base / "output" / "latents" / f"lora_{tag}_00001_.latent")["latent_tensor"]
               for tag in ("patched", "plain", "merged")}
    assert latents["patched"].shape == (1, 16, 3, 4, 4)
    print("lora patch: |patched - merged| max", (latents["patched"] - latents["merged"]).abs().max().item(),
          "|patched - plain| max", (latents["patched"] - latents["plain"]).abs().max().item())
    assert torch.allclose(latents["patched"], latents["merged"], atol=1e-4), (
        (latents["patched"] - latents["merged"]).abs().max())
    assert (latents["patched"] - latents["plain"]).abs().max() > 100 * (latents["patched"] - latents["merged"]).abs().max()
    shown = {d["node"]: d["output"]["text"][0] for kind, d in run if kind == "executed" and d.get("node") in
             ("patched1", "merged1")}
    assert "as ComfyUI patched them" in shown["patched1"] and "family not recognised" in shown["merged1"]
