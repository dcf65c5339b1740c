"""Family recognition on tiny fakes of each public layout, saved as the releases name and lay out their files."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from conftest import random_model

from context_forcing_core.diffusion.sampler import stream
from context_forcing_core.memory.config import memory_preset
from context_forcing_core.models.config import micro
from context_forcing_core.models.family import RUN_CONFIG_METADATA_KEY, recognise
from context_forcing_core.models.loading import save_model
from context_forcing_core.student import Student, load_student, memory_for

FSDP = "model._fsdp_wrapped_module."


def _sd(prefix: str, seed: int = 0) -> dict[str, torch.Tensor]:
    return {prefix + k: v.detach().clone() for k, v in random_model(micro(), seed=seed).state_dict().items()}


# (path under the models folder, what the file holds) as each release ships it (see models/family.py)
LAYOUTS = {
    "self_forcing_dmd.pt": lambda: {"generator_ema": _sd("model.")},
    "longlive_base.pt": lambda: {"generator": _sd("model.")},
    "chunkwise/causal_forcing.pt": lambda: {"generator": _sd("model.")},
    "framewise/causal_forcing.pt": lambda: {"generator_ema": _sd(FSDP)},
    "causal-forcing++/framewise-2step.pt": lambda: {"generator_ema": _sd(FSDP)},
    "causal-forcing++/framewise-1step.pt": lambda: {"generator_ema": _sd(FSDP)},
    "chunkwise/longvideo.pt": lambda: {"generator_ema": _sd(FSDP)},
    "rolling_forcing_dmd.pt": lambda: {"generator": _sd("model."), "critic": _sd("model.", 1),
                                       "generator_ema": _sd(FSDP, 2)},
}
# family name, chunk frames, steps, memory preset
EXPECTED = {
    "self_forcing_dmd.pt": ("Self-Forcing", 3, 4, "self_forcing"),
    "longlive_base.pt": ("LongLive 1.0", 3, 4, "longlive"),
    "chunkwise/causal_forcing.pt": ("Causal Forcing (chunk-wise)", 3, 4, "self_forcing"),
    "framewise/causal_forcing.pt": ("Causal Forcing (frame-wise)", 1, 4, "self_forcing"),
    "causal-forcing++/framewise-2step.pt": ("Causal Forcing++ (frame-wise, 2 steps)", 1, 2, "self_forcing"),
    "causal-forcing++/framewise-1step.pt": ("Causal Forcing++ (frame-wise, 1 step)", 1, 1, "self_forcing"),
    "chunkwise/longvideo.pt": ("Causal Forcing long video (Rolling Forcing based)", 3, 4, "longlive"),
    "rolling_forcing_dmd.pt": ("Rolling Forcing", 3, 5, "longlive"),
}


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_each_release_layout_loads_and_is_recognised_with_its_trained_settings(tmp_path: Path, name: str):
    path = tmp_path / "models" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(LAYOUTS[name](), path)
    student = load_student(path, config=micro())
    family = student.family.family
    assert student.family.known
    assert (family.name, family.chunk_frames, family.steps, family.memory) == EXPECTED[name]
    assert repr(path.name) in student.family.summary() and str(tmp_path) not in student.family.summary()
    memory = memory_for(student, None)
    preset = memory_preset(family.memory)
    assert memory.chunk_frames == family.chunk_frames
    assert memory == (preset if preset.chunk_frames == family.chunk_frames else
                      dataclasses.replace(preset, chunk_frames=family.chunk_frames))


def test_our_exports_are_recognised_from_their_metadata_whatever_their_name(tmp_path: Path):
    path = tmp_path / "self_forcing_copy.safetensors"  # the export's metadata wins over a misleading name
    save_model(random_model(micro()), path, metadata={RUN_CONFIG_METADATA_KEY: json.dumps({"memory": "uniform"})})
    recognition = load_student(path).family
    assert recognition.known and recognition.family.name.startswith("Context Forcing")
    assert recognition.family.memory == "uniform"
    converted = tmp_path / "framewise" / "causal_forcing.safetensors"  # a release saved by save_model: config only
    converted.parent.mkdir()
    save_model(random_model(micro()), converted)
    assert load_student(converted).family.family.name == "Causal Forcing (frame-wise)"


def test_an_unnamed_file_is_unknown_with_a_layout_hint_that_changes_nothing(tmp_path: Path):
    path = tmp_path / "student.pt"
    torch.save({"generator_ema": _sd(FSDP)}, path)
    student = load_student(path, config=micro())
    assert not student.family.known and "frame-wise" in student.family.summary()
    memory = memory_for(student, None)
    assert memory == memory_preset("context_forcing") and memory.chunk_frames == 3
    assert "raw trainer" in recognise("x.pt", LAYOUTS["rolling_forcing_dmd.pt"]()).hint
    assert recognise("x.pt", {"generator": _sd("model.")}).hint == ""


def test_a_frame_wise_student_samples_one_latent_frame_per_chunk(tmp_path: Path):
    path = tmp_path / "framewise" / "causal_forcing.pt"
    path.parent.mkdir()
    torch.save(LAYOUTS["framewise/causal_forcing.pt"](), path)
    student = load_student(path, config=micro())
    memory = memory_for(student, memory_preset("context_forcing"))  # a connected memory keeps its fields
    text = torch.randn(1, 3, micro().text_dim)
    chunks = list(stream(student.model, text, num_latent_frames=4, memory=memory, latent_size=(4, 4),
                         steps=[1000.0, 500.0]))
    assert [c.latents.shape[2] for c in chunks] == [1, 1, 1, 1]
    assert memory.slow_frames == memory_preset("context_forcing").slow_frames


def test_a_student_without_a_file_keeps_the_memory_it_is_given():
    student = Student(model=random_model(micro()), name="MODEL", toy=False)
    assert not student.family.known
    assert memory_for(student, memory_preset("longlive")) == memory_preset("longlive")
