"""Toy text encoder: the frozen vocabulary and outputs the bundled student reads, shapes, padding, word order,
unknown words, determinism across processes."""

from __future__ import annotations

import hashlib
import subprocess
import sys

import numpy as np
import torch

from context_forcing_core.models.config import toy
from context_forcing_core.toyworld.scenes import all_scene_prompts
from context_forcing_core.toyworld.text import VOCABULARY, ToyTextEncoder

ENCODER = ToyTextEncoder(width=64, max_tokens=8)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_vocabulary_is_frozen():
    # The bundled student was trained on this table: a change here changes every embedding it reads.
    assert len(VOCABULARY) == 88 and list(VOCABULARY) == sorted(set(VOCABULARY))
    assert _sha256("\n".join(VOCABULARY).encode()) == "2fec3b330f30d57da5b49cd4f7a431df78c30c3d906caedf92bcd9d96641177f"
    assert ToyTextEncoder().vocabulary == VOCABULARY


def test_outputs_at_the_toy_student_size_are_unchanged():
    cfg = toy()
    enc = ToyTextEncoder(width=cfg.text_dim, max_tokens=cfg.text_len)
    texts = ["a desert scene, shapes over bands", "a sunset scene, vertical bands", "a snow scene, shapes on plain ground",
             "an unknown zyzzyva word", ""]
    out = enc.encode(texts)  # (5, 16, 4096)
    assert _sha256(out.numpy().tobytes()) == "91e8bebeed81664f36f1bf180772daace66daa6c1af04f58f066dc9f6738461d"
    torch.testing.assert_close(out[0, 0, :4], torch.tensor([-1.1258, -0.1524, -0.2506, 0.5661]), rtol=0, atol=1e-4)


def test_encoder_shapes_padding_and_truncation():
    out = ENCODER.encode(["a desert scene", "", "one two three four five six seven eight nine ten"])
    assert out.shape == (3, 8, 64) and out.dtype == torch.float32
    assert out[0, :3].abs().sum(dim=1).min() > 0 and torch.all(out[0, 3:] == 0)
    assert torch.all(out[1] == 0)
    assert torch.all(out[2].abs().sum(dim=1) > 0)  # truncated to max_tokens, no padding
    assert 0.5 < out[0, :3].std().item() < 2.0


def test_encoder_determinism_and_distinct_prompts():
    texts = [p.text for p in all_scene_prompts()]
    a = ENCODER.encode(texts)
    assert torch.equal(a, ToyTextEncoder(width=64, max_tokens=8).encode(texts))
    flat = a.flatten(1)
    assert torch.cdist(flat, flat).add(torch.eye(len(texts)) * 1e9).min() > 1.0
    assert not torch.equal(a, ToyTextEncoder(width=64, max_tokens=8, seed=1).encode(texts))


def test_word_order_and_unknown_words():
    a, b, c, d = ENCODER.encode(["desert scene", "scene desert", "zyzzyva quux", "zyzzyva quux"])
    assert not torch.equal(a, b)
    assert torch.equal(c, d) and torch.all(c[:2].abs().sum(dim=1) > 0)
    assert not torch.equal(c[0], ENCODER.encode(["quux"])[0, 0])
    assert torch.equal(ENCODER.encode(["Desert, SCENE!"]), ENCODER.encode(["desert scene"]))


def test_encoder_is_identical_across_processes():
    code = (
        "import sys, torch; from context_forcing_core.toyworld.text import ToyTextEncoder; "
        "x = ToyTextEncoder(width=64, max_tokens=8).encode(['neon scene zyzzyva']); "
        "sys.stdout.write(x.numpy().tobytes().hex())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PATH": ""}, cwd=None).stdout
    here = ENCODER.encode(["neon scene zyzzyva"]).numpy()
    assert np.array_equal(np.frombuffer(bytes.fromhex(out), dtype=np.float32).reshape(here.shape), here)
