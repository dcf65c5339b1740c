"""Training configuration: sections, presets, validation, overrides, JSON round trip, and old flat configs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from context_forcing_core.memory.config import memory_preset
from training.config import (
    LEGACY_KEYS,
    EmaConfig,
    RolloutConfig,
    RuntimeConfig,
    TrainConfig,
    apply_overrides,
    config_from_dict,
)
from training.presets import PRESETS, preset
from training.run import load_config

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid_and_round_trip_through_json(name, tmp_path):
    cfg = preset(name)
    path = tmp_path / "config.json"
    path.write_text(cfg.to_json())
    assert load_config(cfg.stage, str(path), {}) == cfg


def test_the_config_is_a_few_settings_and_sections():
    assert len(dataclasses.fields(TrainConfig)) <= 20
    data = json.loads(preset("toy-scenes-stage2").to_json())
    assert set(data) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert data["scenes"]["read_weight"] == 5.0 and data["optim"]["generator"]["lr"] == 5e-4


def test_authors_hyperparameters_in_the_wan_presets():
    s1, s2 = preset("wan-1.3b-stage1"), preset("wan-1.3b-stage2")
    g, c = s1.optim.generator, s1.optim.critic
    assert (g.lr, g.beta1, g.beta2, c.lr, c.beta1, c.beta2) == (2e-6, 0.9, 0.999, 4e-7, 0.5, 0.95)
    assert (g.grad_clip, s1.optim.gen_update_every, s1.ema.decay, s1.ema.start) == (2.0, 5, 0.99, 200)
    assert (s1.steps, s1.guidance, s2.steps, s2.guidance) == (600, 3.0, 500, 5.0)
    r = s2.rollout
    assert (r.curriculum_start, r.curriculum_end, r.curriculum_ramp_steps) == (84, 105, 600)


def test_overrides_are_typed_and_validated():
    cfg = apply_overrides(preset("toy-scenes-stage1"), {"optim.critic.lr": "3e-4", "steps": "7",
                                                        "rollout.latent_size": "4x6", "rollout.layout.sink": "1"})
    assert (cfg.optim.critic.lr, cfg.steps, cfg.rollout.latent_size, cfg.rollout.layout.sink) == (3e-4, 7, (4, 6), 1)
    with pytest.raises(ValueError, match="unknown setting 'optim.critic.momentum'"):
        apply_overrides(cfg, {"optim.critic.momentum": "0.9"})
    with pytest.raises(ValueError, match="'ema' is a section; set its fields"):
        apply_overrides(cfg, {"ema": "0.9"})
    with pytest.raises(ValueError, match="cannot read 'many' as int"):
        apply_overrides(cfg, {"steps": "many"})
    with pytest.raises(ValueError, match="lr must be positive"):
        apply_overrides(cfg, {"optim.generator.lr": "-1"})
    with pytest.raises(ValueError, match="allowed: context_forcing"):
        apply_overrides(cfg, {"memory": "lru"})


def test_a_section_is_validated_once_with_all_its_overrides():
    """Growing the rollout past the old target in one go: each field alone would be invalid on the way."""
    cfg = apply_overrides(preset("toy-scenes-stage1"), {"rollout.target_frames": "48", "rollout.frames": "48"})
    assert (cfg.rollout.frames, cfg.rollout.target_frames) == (48, 48)


@pytest.mark.parametrize("make, message", [
    (lambda: TrainConfig(stage="stage3"), "allowed: teacher, context-teacher, ode-init, stage1, stage2"),
    (lambda: RolloutConfig(target_frames=24), "target <= rollout"),
    (lambda: EmaConfig(decay=1.0), r"\(0, 1\)"),
    (lambda: RuntimeConfig(dtype="float16"), "allowed: float32, bfloat16"),
    (lambda: TrainConfig(stage="stage2", rollout=RolloutConfig(curriculum_start=12)), "curriculum_start"),
    (lambda: TrainConfig(rollout=RolloutConfig(frames=20, target_frames=20)), "whole 3-frame chunks"),
])
def test_invalid_configs(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_memory_tau_overrides_the_presets_threshold_and_nothing_else():
    cfg = apply_overrides(preset("wan-1.3b-stage2"), {"memory_tau": "0.999"})
    assert cfg.memory_config() == memory_preset("context_forcing").replace(tau=0.999)
    assert apply_overrides(cfg, {"memory_tau": "none"}).memory_config() == memory_preset("context_forcing")
    with pytest.raises(ValueError, match="tau is a cosine similarity"):
        apply_overrides(cfg, {"memory_tau": "1.5"})
    with pytest.raises(ValueError, match="cannot read 'high' as float"):
        apply_overrides(cfg, {"memory_tau": "high"})


def test_old_flat_names_still_override():
    """Commands written before the sections (``--read_weight 0``) keep working."""
    base = preset("toy-scenes-stage2")
    old = apply_overrides(base, {"read_weight": "0", "scenes_per_video": "5", "generator_optim.lr": "1e-4",
                                 "erft.clean_prob": "1", "layout.recent": "3", "memory": "context_forcing",
                                 "memory_tau": "0.9", "ema_decay": "0.9", "world": "scenes"})
    new = apply_overrides(base, {"scenes.read_weight": "0", "scenes.per_video": "5", "optim.generator.lr": "1e-4",
                                 "teacher_stage.erft.clean_prob": "1", "rollout.layout.recent": "3",
                                 "memory": "context_forcing", "memory_tau": "0.9", "ema.decay": "0.9"})
    assert old == new and old != base
    with pytest.raises(ValueError, match="given twice"):
        apply_overrides(base, {"read_weight": "0", "scenes.read_weight": "5"})
    assert all(set(LEGACY_KEYS[k].split(".")[:1]) <= {f.name for f in dataclasses.fields(TrainConfig)}
               for k in LEGACY_KEYS)


def test_an_old_flat_config_json_loads_as_the_same_run(tmp_path):
    """``old_flat_config.json`` is ``toy-scenes-stage2`` as the code before the sections wrote it."""
    old = json.loads((FIXTURES / "old_flat_config.json").read_text())
    assert old["ema_decay"] == 0.99 and old["world"] == "scenes" and "scenes" not in old
    cfg = config_from_dict(old)
    assert cfg == preset("toy-scenes-stage2")  # its teacher-forcing ramp, half its 600 steps, is the preset's 300
    assert load_config("stage2", str(FIXTURES / "old_flat_config.json"), {"steps": "900"}).scenes == cfg.scenes
    longer = dict(old, steps=1000)  # an old run of 1000 steps ramped over 500
    assert config_from_dict(longer).scenes.teacher_forcing_ramp_steps == 500.0


def test_an_old_config_of_the_retired_toy_world_is_refused_and_wan_configs_still_load():
    old = json.loads((FIXTURES / "old_flat_config.json").read_text())
    gone = "pan"  # the retired world's name in old configs
    with pytest.raises(ValueError, match="that toy world was retired"):
        config_from_dict(dict(old, world=gone))
    wan = config_from_dict(dict(json.loads(preset("wan-1.3b-stage1").to_json()), world=gone))
    assert wan == preset("wan-1.3b-stage1")  # a non-toy model never read the field
    with pytest.raises(ValueError, match="that toy world was retired"):
        apply_overrides(preset("toy-scenes-stage1"), {"world": gone})
