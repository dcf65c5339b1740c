"""The Streaming Decode node over a stub Wan VAE (comfy_stubs): same frames as whole decode, messages, cancel.

The real Wan VAE in a real ComfyUI is tested in test_real_comfyui_wan.py (equal to core VAE Decode + Save Image).
"""

from __future__ import annotations

import types

import comfy_stubs
import numpy as np
import pytest
import torch
from comfy_stubs import INTERRUPT, OUTPUT, PROGRESS, InterruptProcessingException
from PIL import Image

from context_forcing_core.stream_decode import to_uint8
from nodes.stream_decode import StreamingDecode

assert comfy_stubs  # installed on import


def _vae() -> types.SimpleNamespace:
    from comfy.ldm.wan.vae import WanVAE

    return types.SimpleNamespace(first_stage_model=WanVAE(), patcher=None, device=torch.device("cpu"),
                                 vae_dtype=torch.float32, memory_used_decode=lambda shape, dtype: 0)


@pytest.fixture(autouse=True)
def _reset():
    PROGRESS.clear()
    INTERRUPT["after_ticks"] = None
    yield
    INTERRUPT["after_ticks"] = None


def test_each_video_of_the_batch_becomes_a_png_sequence_equal_to_whole_decode():
    vae, latents = _vae(), torch.randn(2, 16, 4, 2, 3)
    out = StreamingDecode.execute({"samples": latents}, vae, "stream/batch", "png frames", 16)
    paths = out.args[0].split("\n")
    assert paths == ["stream/batch_00001_", "stream/batch_00002_"]  # relative to the output folder
    for b, path in enumerate(paths):
        files = sorted((OUTPUT / path).iterdir())
        with torch.no_grad():
            reference = to_uint8(vae.first_stage_model.decode(latents[b:b + 1]))  # (13, 16, 24, 3)
        np.testing.assert_array_equal(np.stack([np.asarray(Image.open(f)) for f in files]), reference)
    assert [p[0] for p in PROGRESS] == list(range(1, 9)) and {p[1] for p in PROGRESS} == {8}


def test_cancel_leaves_no_partial_output():
    INTERRUPT["after_ticks"] = 2
    with pytest.raises(InterruptProcessingException):
        StreamingDecode.execute({"samples": torch.randn(1, 16, 5, 2, 2)}, _vae(), "stream/cancelled", "png frames", 16)
    assert not [p for p in (OUTPUT / "stream").iterdir() if "cancelled" in p.name]


@pytest.mark.parametrize("samples, vae, prefix, expected", [
    ({"samples": torch.zeros(1, 16, 2, 2)}, "wan", "x", "must be a video LATENT"),
    ("not a latent", "wan", "x", "must be a video LATENT"),
    ({"samples": torch.zeros(1, 48, 2, 8, 8)}, "wan", "x", "16-channel latents, got 48"),
    ({"samples": torch.zeros(1, 16, 0, 2, 2)}, "wan", "x", "holds no latent frames"),
    ({"samples": torch.zeros(1, 16, 3, 2, 2)}, "other", "x", "does not decode frame by frame"),
    ({"samples": torch.zeros(1, 16, 2, 2, 2)}, "sd", "x", "needs the Wan 2.1 VAE"),
    ({"samples": torch.zeros(1, 16, 2, 2, 2)}, "wan", "../../escape", "must stay inside the output folder"),
])
def test_input_mistakes_are_blocked_with_a_message(samples, vae, prefix, expected):
    if vae == "other":  # a VAE whose whole-video decode is not its decoder's frame loop (internals changed)
        vae = _vae()
        whole = vae.first_stage_model.decode
        vae.first_stage_model.decode = lambda z: 0.5 * whole(z)
    else:
        vae = _vae() if vae == "wan" else types.SimpleNamespace(first_stage_model=torch.nn.Identity(),
                                                                 memory_used_decode=lambda shape, dtype: 0)
    out = StreamingDecode.execute(samples, vae, prefix, "mp4", 16)
    assert expected in out.block_execution and out.block_execution.startswith("Streaming Decode: ")


def test_mp4_output_is_shown_as_a_video_in_the_output_folder():
    out = StreamingDecode.execute({"samples": torch.randn(1, 16, 3, 2, 2)}, _vae(), "stream/clip", "mp4", 16)
    assert out.args[0] == "stream/clip_00001_.mp4" and (OUTPUT / out.args[0]).stat().st_size > 0
    assert out.ui == {"images": [{"filename": "clip_00001_.mp4", "subfolder": "stream", "type": "output"}]}


def test_a_decoder_that_returns_its_frames_as_a_list_streams_the_same_video():
    """Later ComfyUI decoders return a list of frame groups; they are joined, and the check against the whole-video
    decode still passes when the frames agree."""
    vae = _vae()
    inner = vae.first_stage_model.decoder

    class ListDecoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x, feat_cache, feat_idx):
            out = self.inner(x, feat_cache=feat_cache, feat_idx=feat_idx)
            return [out[:, :, :1], out[:, :, 1:]]  # the same frames, split

    latents = torch.randn(1, 16, 3, 2, 2)
    with torch.no_grad():
        reference = to_uint8(vae.first_stage_model.decode(latents))
    model = vae.first_stage_model
    model.decoder = ListDecoder()

    def decode(z: torch.Tensor) -> torch.Tensor:  # its whole-video loop, joining each call's list
        cache: list = [None]
        return torch.cat([torch.cat(model.decoder(x, feat_cache=cache, feat_idx=[0]), 2)
                          for x in model.conv2(z).split(1, dim=2)], 2)

    model.decode = decode
    out = StreamingDecode.execute({"samples": latents}, vae, "stream/lists", "png frames", 16)
    assert out.block_execution is None, out.block_execution
    files = sorted((OUTPUT / out.args[0]).iterdir())
    np.testing.assert_array_equal(np.stack([np.asarray(Image.open(f)) for f in files]), reference)
