"""Training on prepared data: latent and prompt caches feed every stage; mismatches are named before training."""

from __future__ import annotations

import pytest
import torch

from training.config import TrainConfig, apply_overrides
from training.data.cache import CacheSpec, ClipCache, clip_key
from training.data.negative import NEGATIVE_FILE, read_negative, write_negative
from training.data.prompt_cache import PromptCacheSpec, open_prompt_cache, shard_path, write_prompt_shard
from training.loop import build_run, train, train_step
from training.updates import _clip_batch

# the micro model: 4 latent channels, text width 8, 4 text rows; 4 x 4 latents
SPEC = CacheSpec(latent_shape=(4, 12, 4, 4), text_dim=8, text_len=4, save_dtype="float32",
                 video={"fps": 16.0, "height": 32, "width": 32, "num_frames": 45})


def _clip_cache(folder, n=3, spec=SPEC):
    cache = ClipCache(folder, spec)
    gen = torch.Generator().manual_seed(0)
    clips = []
    for i in range(n):
        lat, text = torch.randn(spec.latent_shape, generator=gen), torch.randn(i % 4 + 1, spec.text_dim, generator=gen)
        cache.add(clip_key(f"v{i}.mp4", f"caption {i}"), lat, text, caption=f"caption {i}", source=f"v{i}.mp4")
        clips.append((lat, text))
    write_negative(folder, "", torch.full((1, spec.text_dim), 0.5), torch.float32)
    return clips


def _prompt_cache(folder, n=5):
    spec = PromptCacheSpec(text_dim=8, text_len=4, save_dtype="float32", shard_size=4)
    prompts = [f"prompt {i}" for i in range(n)]
    open_prompt_cache(folder, spec, prompts)
    gen = torch.Generator().manual_seed(1)
    for k in range(0, n, 4):
        states = [torch.randn(2, 8, generator=gen) for _ in prompts[k : k + 4]]
        write_prompt_shard(shard_path(folder, k // 4), prompts[k : k + 4], states, torch.float32)
    write_negative(folder, "blurry", torch.full((3, 8), -0.5), torch.float32)


def _cfg(stage, data, overrides=None):
    base = {"stage": stage, "model": "micro", "teacher": "micro", "data": str(data), "rollout.latent_size": "4x4",
            "batch_size": "2", "grad_accum": "1", "rollout.frames": "6", "rollout.target_frames": "3", "steps": "2",
            "logging.save_every": "2", "logging.log_every": "1"}
    return apply_overrides(TrainConfig(), base | {k: str(v) for k, v in (overrides or {}).items()})


def test_teacher_trains_on_cropped_windows_of_cached_clips(tmp_path):
    clips = _clip_cache(tmp_path)
    run = build_run(_cfg("teacher", tmp_path, {"teacher_stage.text_dropout": 0.0}))
    assert torch.equal(run.uncond[0, 0], torch.full((8,), 0.5)) and not run.uncond[0, 1:].any()
    latents, text = _clip_batch(run, 0, torch.Generator().manual_seed(3))
    assert latents.shape == (2, 4, 6, 4, 4) and text.shape == (2, 4, 8)
    for b, (cached, cached_text) in enumerate(clips[:2]):
        windows = [cached[:, s : s + 6] for s in range(12 - 6 + 1)]
        assert any(torch.equal(latents[b], w) for w in windows)  # a window of the clip, not a resample
        assert torch.equal(text[b, : len(cached_text)], cached_text) and not text[b, len(cached_text) :].any()
    train(run, tmp_path / "run")
    assert run.state.step == 2 and (tmp_path / "run" / "latest").exists()


def test_text_dropout_swaps_whole_prompts_for_the_negative_prompt(tmp_path):
    clips = _clip_cache(tmp_path, n=8)
    run = build_run(_cfg("teacher", tmp_path, {"teacher_stage.text_dropout": 0.5, "batch_size": 8}))
    _, text = _clip_batch(run, 0, torch.Generator().manual_seed(0))
    negative = [torch.equal(t, run.uncond[0]) for t in text]
    assert 0 < sum(negative) < 8, negative  # seeded: some of each
    for t, neg, (_, cached_text) in zip(text, negative, clips):
        assert neg or torch.equal(t[: len(cached_text)], cached_text)


def test_context_teacher_and_dmd_stages_run_on_caches(tmp_path):
    _clip_cache(tmp_path / "clips")
    ct = build_run(_cfg("context-teacher", tmp_path / "clips", {"teacher_stage.context_min": 3,
                                                                "teacher_stage.context_max": 6}))
    assert "flow_loss" in train_step(ct)
    _prompt_cache(tmp_path / "prompts")
    for stage in ("stage1", "stage2"):
        run = build_run(_cfg(stage, tmp_path / "prompts", {"rollout.curriculum_start": 6, "rollout.curriculum_end": 6}))
        assert torch.equal(run.uncond[0, :3], torch.full((3, 8), -0.5))
        metrics = train_step(run)
        assert torch.isfinite(torch.tensor([metrics["dmd_loss"], metrics["critic_loss"]])).all()


def test_mismatched_data_is_named_before_training(tmp_path):
    _clip_cache(tmp_path / "clips")
    _prompt_cache(tmp_path / "prompts")
    with pytest.raises(ValueError, match="not a prompt cache"):
        build_run(_cfg("stage1", tmp_path / "clips"))
    with pytest.raises(ValueError, match="not a latent cache"):
        build_run(_cfg("teacher", tmp_path / "prompts"))
    with pytest.raises(ValueError, match=r"F >= 15"):  # 12 cached frames, 12 + 3 needed
        build_run(_cfg("context-teacher", tmp_path / "clips", {"teacher_stage.context_min": 3,
                                                               "teacher_stage.context_max": 12}))
    with pytest.raises(ValueError, match=r"\(h, w\) = \(6, 6\)"):
        build_run(_cfg("teacher", tmp_path / "clips", {"rollout.latent_size": "6x6"}))
    with pytest.raises(ValueError, match="give --data"):
        build_run(_cfg("teacher", ""))
    (tmp_path / "clips" / NEGATIVE_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="negative.safetensors missing"):
        build_run(_cfg("teacher", tmp_path / "clips"))
    write_negative(tmp_path / "clips", "", torch.zeros(5, 8), torch.float32)
    with pytest.raises(ValueError, match=r"negative.safetensors: key 'text_states' has shape \(5, 8\)"):
        read_negative(tmp_path / "clips", text_len=4, text_dim=8)
    with pytest.raises(ValueError, match="sample_every"):
        _cfg("teacher", tmp_path / "clips", {"logging.sample_every": 5})
