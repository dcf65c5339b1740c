"""Training configuration: presets, validation, overrides, JSON round trip."""

from __future__ import annotations

import dataclasses
import json

import pytest

from context_forcing_core.memory.config import memory_preset
from training.config import PRESETS, TrainConfig, apply_overrides, preset
from training.run import load_config


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_are_valid_and_round_trip_through_json(name, tmp_path):
    cfg = preset(name)
    path = tmp_path / "config.json"
    path.write_text(cfg.to_json())
    assert load_config(cfg.stage, str(path), {}) == cfg


def test_authors_hyperparameters_in_the_wan_presets():
    s1, s2 = preset("wan-1.3b-stage1"), preset("wan-1.3b-stage2")
    assert (s1.generator_optim.lr, s1.generator_optim.beta1, s1.generator_optim.beta2) == (2e-6, 0.9, 0.999)
    assert (s1.critic_optim.lr, s1.critic_optim.beta1, s1.critic_optim.beta2) == (4e-7, 0.5, 0.95)
    assert (s1.generator_optim.grad_clip, s1.gen_update_every, s1.ema_decay, s1.ema_start) == (2.0, 5, 0.99, 200)
    assert (s1.steps, s1.guidance, s2.steps, s2.guidance) == (600, 3.0, 500, 5.0)
    assert (s2.curriculum_start, s2.curriculum_end, s2.curriculum_ramp_steps) == (84, 105, 600)


def test_overrides_are_typed_and_validated():
    cfg = apply_overrides(preset("toy-scenes-stage1"), {"critic_optim.lr": "3e-4", "steps": "7", "latent_size": "4x6"})
    assert (cfg.critic_optim.lr, cfg.steps, cfg.latent_size) == (3e-4, 7, (4, 6))
    with pytest.raises(ValueError, match="unknown setting 'critic_optim.momentum'"):
        apply_overrides(cfg, {"critic_optim.momentum": "0.9"})
    with pytest.raises(ValueError, match="cannot read 'many' as int"):
        apply_overrides(cfg, {"steps": "many"})
    with pytest.raises(ValueError, match="lr must be positive"):
        apply_overrides(cfg, {"generator_optim.lr": "-1"})
    with pytest.raises(ValueError, match="allowed: context_forcing"):
        apply_overrides(cfg, {"memory": "lru"})


@pytest.mark.parametrize("kwargs, message", [
    ({"stage": "stage3"}, "allowed: teacher, context-teacher, ode-init, stage1, stage2"),
    ({"target_frames": 24}, "target <= rollout"),
    ({"ema_decay": 1.0}, r"\(0, 1\)"),
    ({"dtype": "float16"}, "allowed: float32, bfloat16"),
    ({"stage": "stage2", "curriculum_start": 12}, "curriculum_start"),
])
def test_invalid_configs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_the_resolved_config_lists_every_setting():
    data = json.loads(preset("toy-scenes-stage2").to_json())
    assert set(data) == {f.name for f in dataclasses.fields(TrainConfig)}


def test_memory_tau_overrides_the_presets_threshold_and_nothing_else():
    cfg = apply_overrides(preset("wan-1.3b-stage2"), {"memory_tau": "0.999"})
    assert cfg.memory_config() == memory_preset("context_forcing").replace(tau=0.999)
    assert apply_overrides(cfg, {"memory_tau": "none"}).memory_config() == memory_preset("context_forcing")
    with pytest.raises(ValueError, match="tau is a cosine similarity"):
        apply_overrides(cfg, {"memory_tau": "1.5"})
    with pytest.raises(ValueError, match="cannot read 'high' as float"):
        apply_overrides(cfg, {"memory_tau": "high"})
