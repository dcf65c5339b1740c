"""Every stage on the toy world through the CLI (context teacher, ODE init, Stage 1 / 2 by DMD and by regression),
the Stage 2 context layout, and the whole toy pipeline."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from context_forcing_core import load_model
from context_forcing_core.models.config import model_preset
from context_forcing_core.models.loading import save_model
from context_forcing_core.models.wan import WanModel
from context_forcing_core.objectives.context_teacher import ContextLayout, context_indices
from training import pipeline, run
from training.config import apply_overrides
from training.loop import build_run
from training.presets import preset
from training.updates import _noised_target, critic_update, generator_update

SMALL_SCHEDULES = ["--batch_size", "2", "--rollout.frames", "12", "--rollout.target_frames", "12",
                   "--rollout.curriculum_start", "12", "--rollout.curriculum_end", "12", "--scenes.per_video", "2"]
"""Toy world regression on 12-frame schedules of 2 scenes, 2 per micro-batch."""


FIXTURES = Path(__file__).parent / "fixtures"


def weights(folder, name="student"):
    return [p.detach() for p in load_model(folder / f"{name}.safetensors").parameters()]


def _kill_and_resume(tmp_path, common):
    assert run.main(common + ["--out", str(tmp_path / "a"), "--steps", "3"]) == 0
    assert run.main(common + ["--out", str(tmp_path / "b"), "--steps", "2"]) == 0  # killed after step 2
    assert run.main(common + ["--out", str(tmp_path / "b"), "--steps", "3", "--resume"]) == 0
    for name in ("student", "student_ema"):
        a, b = weights(tmp_path / "a" / "step_000003", name), weights(tmp_path / "b" / "step_000003", name)
        assert all(torch.equal(x, y) for x, y in zip(a, b)), name
    first = weights(tmp_path / "a" / "step_000001")
    assert any(not torch.equal(x, y) for x, y in zip(first, weights(tmp_path / "a" / "step_000003")))
    return [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]


def test_context_teacher_resumes_exactly_with_its_error_banks(tmp_path):
    """The banks feed injections from step 1 on; a resume that lost them would inject differently."""
    common = ["context-teacher", "--config", "toy-scenes-context-teacher", "--logging.save_every", "1",
              "--batch_size", "2", "--rollout.frames", "6", "--rollout.target_frames", "6",
              "--teacher_stage.context_min", "6", "--teacher_stage.context_max", "12",
              "--teacher_stage.erft.clean_prob", "0", "--teacher_stage.erft.capacity", "4"]
    lines = _kill_and_resume(tmp_path, common)
    assert [m["step"] for m in lines] == [0, 1, 2]
    assert lines[0]["bank_size"] > 0 and lines[-1]["injected"] == 1.0
    saved = torch.load(tmp_path / "b" / "step_000002" / "state.pt", weights_only=True)
    assert sum(s.shape[0] for s in saved["bank"]["x0"] if s is not None) > 0


def test_ode_init_caches_pairs_and_resumes_exactly(tmp_path):
    teacher_dir = tmp_path / "teacher"
    assert run.main(["teacher", "--config", "toy-scenes-teacher", "--out", str(teacher_dir), "--steps", "1",
                     "--rollout.frames", "6", "--rollout.target_frames", "6", "--batch_size", "1"]) == 0
    teacher = str(teacher_dir / "step_000001" / "student_ema.safetensors")
    common = ["ode-init", "--config", "toy-scenes-ode-init", "--teacher", teacher, "--logging.save_every", "1",
              "--batch_size", "2", "--rollout.frames", "6", "--rollout.target_frames", "6", "--ode.pairs", "3",
              "--ode.steps", "8"]
    lines = _kill_and_resume(tmp_path, common)
    assert all(m["ode_loss"] > 0 for m in lines)
    assert len(list((tmp_path / "b" / "ode_pairs").glob("shard_*.safetensors"))) == 1


def test_ode_init_copies_the_teacher_only_when_it_has_the_student_architecture(tmp_path):
    toy = model_preset("toy")
    same, deeper = WanModel(toy), WanModel(dataclasses.replace(toy, num_layers=3))
    save_model(same, tmp_path / "same.safetensors")
    save_model(deeper, tmp_path / "deeper.safetensors")
    cfg = preset("toy-scenes-ode-init")
    copied = build_run(cfg, teacher=str(tmp_path / "same.safetensors")).state.student
    assert all(torch.equal(a, b) for a, b in zip(copied.parameters(), same.parameters()))
    fresh = build_run(cfg, teacher=str(tmp_path / "deeper.safetensors")).state.student
    assert fresh.config == toy and len(fresh.blocks) == 2


def test_stage2_scores_the_target_given_the_layout_context():
    cfg = apply_overrides(preset("toy-scenes-stage2-dmd"), {"rollout.layout.recent": "2", "rollout.layout.sink": "1",
                                                           "rollout.layout.slow": "2",
                                                           "rollout.layout.slow_stride_frames": "3"})
    r = build_run(cfg)
    x = torch.arange(63, dtype=torch.float32).reshape(1, 1, 63, 1, 1).expand(1, 48, 63, 8, 8)
    context, _, _, x_t = _noised_target(r, x, torch.Generator().manual_seed(0))
    expected = context_indices(42, ContextLayout(sink=1, slow=2, slow_stride_frames=3, recent=2))
    assert context[0, 0, :, 0, 0].tolist() == [float(i) for i in expected] == [0.0, 34.0, 37.0, 40.0, 41.0]
    assert x_t.shape[2] == 21


def test_scene_stage2_dmd_scores_the_rollout_with_the_exact_long_teacher():
    """Stage 2 DMD on the toy world: the closed-form real score reads the student's context, the critic learns."""
    from context_forcing_core.toyworld.exact_teacher import ExactTeacher

    cfg = apply_overrides(preset("toy-scenes-stage2-dmd"), {"rollout.frames": "6", "rollout.target_frames": "6",
                                                           "rollout.curriculum_start": "12", "rollout.curriculum_end": "12"})
    r = build_run(cfg)
    assert isinstance(r.teacher, ExactTeacher) and r.teacher.use_context and r.state.critic is not None
    contexts = []
    real = r.teacher.x0
    r.teacher.x0 = lambda x_t, sigma, text, context=None, **kw: contexts.append(context.shape[2]) or real(
        x_t, sigma, text, context, **kw)
    metrics = generator_update(r, 12) | critic_update(r, 12)  # what train_step runs for a 12-frame draw
    assert metrics["dmd_loss"] > 0 and metrics["critic_loss"] > 0
    assert contexts and all(n > 0 for n in contexts)


def test_the_pipeline_runs_its_stages_and_exports_the_stage2_student(tmp_path, monkeypatch):
    inits = []
    real = run.build_run
    monkeypatch.setattr(run, "build_run", lambda cfg, **kw: inits.append((cfg.stage, kw["student_init"])) or real(cfg, **kw))
    seconds = pipeline.run_pipeline(tmp_path, scale=0.002)  # teacher 6 steps, first visits 16, the others 1
    assert list(seconds) == list(pipeline.ORDER)
    assert json.loads((tmp_path / "pipeline.json").read_text())["seconds"] == seconds
    assert [stage for stage, _ in inits] == [pipeline.STAGES[s][0] for s in pipeline.ORDER]
    first_visits = str(tmp_path / "first-visit" / "step_000016" / "student_ema.safetensors")
    assert dict(inits)["stage1"] == dict(inits)["stage2"] == first_visits  # twins from one init
    assert dict(inits)["ode-init"] is None  # from random weights
    config = json.loads((tmp_path / "stage2" / "config.json").read_text())
    assert config["objective"] == "regression" and config["teacher"] == "exact" and config["steps"] == 1
    student = load_model(tmp_path / "toy_student.safetensors")
    ema = load_model(tmp_path / "stage2" / "step_000001" / "student_ema.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(student.parameters(), ema.parameters()))


def test_the_pipeline_passes_a_device_to_every_stage(tmp_path):
    assert all(args[-2:] != ["--runtime.device", "cuda"] for _, args in pipeline.stage_commands(tmp_path, 1.0))
    commands = pipeline.stage_commands(tmp_path, 1.0, "cuda")
    assert [stage for stage, _ in commands] == list(pipeline.ORDER)
    assert all(args[-2:] == ["--runtime.device", "cuda"] and args.count("--runtime.device") == 1 for _, args in commands)


def test_scene_stage2_regression_resumes_exactly_with_more_steps(tmp_path):
    """Toy world Stage 2 through the CLI: exact teacher, schedules, no critic. A run of 2 steps resumed to 3 is the
    3-step run: the teacher-forcing ramp (1 to 0 over 3 steps here) has its own length, not a share of ``steps``."""
    common = ["stage2", "--config", "toy-scenes-stage2", "--logging.save_every", "1", *SMALL_SCHEDULES, "--ode.steps", "4",
              "--scenes.teacher_forcing_end", "0", "--scenes.teacher_forcing_ramp_steps", "3", "--seed", "2"]
    rows = _kill_and_resume(tmp_path, common)
    straight = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["teacher_forced"] for r in rows] == [r["teacher_forced"] for r in straight] == [1.0, 1.0, 0.0]
    assert [r["regression_loss"] for r in rows] == [r["regression_loss"] for r in straight]
    assert not (tmp_path / "a" / "step_000003" / "critic.safetensors").exists()


def test_a_run_folder_written_before_the_config_sections_resumes_as_the_same_run(tmp_path):
    """``old_run_config.json`` and ``old_run_metrics.jsonl``: a 4-step toy Stage 2 run (seed 1, teacher forcing 1 to 0
    over half its steps) as the code before the sections wrote and logged it, uninterrupted. Here the same folder is
    killed after step 2 (its ``config.json`` the old flat one), then resumed from that file with ``--steps 4``: every
    metric is the old run's, the teacher-forced draws included."""
    old_config = FIXTURES / "old_run_config.json"
    out = tmp_path / "run"
    assert run.main(["stage2", "--config", str(old_config), "--out", str(out), "--steps", "2"]) == 0
    (out / "config.json").write_text(old_config.read_text())
    assert run.main(["stage2", "--config", str(out / "config.json"), "--out", str(out), "--steps", "4", "--resume"]) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    expected = [json.loads(line) for line in (FIXTURES / "old_run_metrics.jsonl").read_text().splitlines()]
    assert [r["teacher_forced"] for r in rows] == [r["teacher_forced"] for r in expected] == [1.0, 1.0, 0.0, 0.0]
    for row, old in zip(rows, expected, strict=True):
        assert {k: row[k] for k in old} == pytest.approx(old, rel=1e-6), row["step"]
    assert json.loads((out / "config.json").read_text())["scenes"]["teacher_forcing_ramp_steps"] == 2.0


def test_scene_stage1_dmd_scores_with_the_exact_teacher(tmp_path):
    """Stage 1 on the scene world: the real score is the closed-form teacher, the critic a learned copy."""
    cfg = apply_overrides(preset("toy-scenes-stage1"), {"rollout.frames": "6", "rollout.target_frames": "6"})
    r = build_run(cfg)
    from context_forcing_core.toyworld.exact_teacher import ExactTeacher
    assert isinstance(r.teacher, ExactTeacher) and r.state.critic is not None
    assert run.main(["stage1", "--config", "toy-scenes-stage1", "--out", str(tmp_path), "--steps", "1",
                     "--rollout.frames", "6", "--rollout.target_frames", "6", "--logging.sample_every", "1",
                     "--logging.sample_videos", "1", "--logging.sample_seconds", "3"]) == 0
    row, samples = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert row["dmd_loss"] > 0 and row["critic_loss"] > 0
    assert samples["step"] == 1 and 0 <= samples["sample/library_distance"]  # the EMA student's sample video
    assert (tmp_path / "samples" / "step_0000001" / "sample_0.gif").is_file()


def test_scene_stage1_regression_asks_the_short_teacher(tmp_path, monkeypatch):
    """Stage 1 by regression: no critic, and the exact teacher sees at most target_frames - chunk earlier frames."""
    import training.worlds.scenes as scenes

    windows = []
    real = scenes.scheduled_regression

    def spy(*args, **kwargs):
        windows.append(kwargs["teacher_window"])
        return real(*args, **kwargs)

    monkeypatch.setattr(scenes, "scheduled_regression", spy)
    cfg = apply_overrides(preset("toy-scenes-stage1-regression"), {"rollout.frames": "12", "rollout.target_frames": "6"})
    assert build_run(cfg).state.critic is None
    assert run.main(["stage1", "--config", "toy-scenes-stage1-regression", "--out", str(tmp_path), "--steps", "1",
                     "--batch_size", "2", "--rollout.frames", "12", "--rollout.target_frames", "6",
                     "--scenes.per_video", "2", "--ode.steps", "4"]) == 0
    assert windows == [6]
    row = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert row["regression_loss"] > 0


def test_balanced_reading_rolls_out_copies_of_one_schedule(tmp_path, monkeypatch):
    """``--read_onto balanced``: the micro-batch's items share their prompts (so inventions can be shared out), the
    reader is the balanced one, and the loss includes its term."""
    import training.worlds.scenes as scenes

    texts, calls = [], []
    real_regression, real_reading = scenes.scheduled_regression, scenes.balanced_reading

    def spy(student, teacher, schedule, **kwargs):
        texts.append(schedule.texts)
        return real_regression(student, teacher, schedule, **kwargs)

    def spy_reading(*args):
        calls.append(args[-1].clone())
        return real_reading(*args)

    monkeypatch.setattr(scenes, "scheduled_regression", spy)
    monkeypatch.setattr(scenes, "balanced_reading", spy_reading)
    assert run.main(["stage2", "--config", "toy-scenes-stage2", "--out", str(tmp_path), "--steps", "1",
                     *SMALL_SCHEDULES, "--ode.steps", "4", "--scenes.read_onto", "balanced"]) == 0
    assert all(torch.equal(t[0], t[1]) for t in texts[0])
    assert len(calls) == 4 and bool(calls[0].all())  # every chunk read; the first one invents
    row = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert row["read_loss"] > 0
    with pytest.raises(ValueError, match="batch_size"):
        apply_overrides(preset("toy-scenes-stage2"), {"scenes.read_onto": "balanced", "batch_size": "9"})


def test_quantile_coupling_regresses_onto_the_coupled_sample(tmp_path, monkeypatch):
    """``--target_coupling quantile``: every chunk's target is the exact teacher's quantile-coupled picture (given the
    chunk's context), not its ODE end point."""
    import training.worlds.scenes as scenes

    calls = []
    real = scenes.coupled_sample

    def spy(teacher, text, *, noise, context=None):
        out = real(teacher, text, noise=noise, context=context)
        calls.append((context is None, out))
        return out

    monkeypatch.setattr(scenes, "coupled_sample", spy)
    monkeypatch.setattr(scenes, "exact_sample", lambda *a, **k: pytest.fail("the ODE target is not used"))
    assert run.main(["stage2", "--config", "toy-scenes-stage2", "--out", str(tmp_path), "--steps", "1",
                     *SMALL_SCHEDULES, "--scenes.read_weight", "0", "--scenes.target_coupling", "quantile"]) == 0
    assert len(calls) == 4 and calls[0][0] and not calls[1][0]  # the first chunk has no context, the others do
    assert all(torch.equal(out[:, :, 0], out[:, :, -1]) for _, out in calls)  # one picture held in every frame
    row = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert row["regression_loss"] > 0
    with pytest.raises(ValueError, match="target_coupling"):
        apply_overrides(preset("toy-scenes-stage2"), {"scenes.target_coupling": "flow"})


def test_scene_teacher_trains_on_single_visit_clips(tmp_path):
    """The learned teacher on the scene world: its clips are one library picture held still."""
    cfg = apply_overrides(preset("toy-scenes-teacher"), {"rollout.frames": "6", "rollout.target_frames": "6",
                                                         "batch_size": "2"})
    r = build_run(cfg)
    clip = r.clips[0]
    assert clip.latents.shape == (48, 6, 8, 8) and torch.equal(clip.latents[:, 0], clip.latents[:, -1])
    assert run.main(["teacher", "--config", "toy-scenes-teacher", "--out", str(tmp_path), "--steps", "2",
                     "--rollout.frames", "6", "--rollout.target_frames", "6", "--batch_size", "2"]) == 0
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [0, 1]
    assert all(math.isfinite(row["flow_loss"]) and row["flow_loss"] > 0 for row in rows)


def test_scene_context_teacher_learns_the_visit_that_ends_its_clip(tmp_path, monkeypatch):
    """The learned context teacher on the scene world: clips end in the target visit, cut from the front."""
    import training.updates as updates

    cfg = apply_overrides(preset("toy-scenes-context-teacher"), {"batch_size": "2"})
    r = build_run(cfg)
    clip = r.clips[0]
    assert clip.latents.shape == (48, cfg.teacher_stage.context_max + cfg.rollout.target_frames, 8, 8)
    target = clip.latents[:, -cfg.rollout.target_frames:]
    assert all(torch.equal(target[:, 0], target[:, i]) for i in range(cfg.rollout.target_frames))
    batches, clips = [], []
    real_batch, real_step = updates._clip_batch, updates.erft_step
    monkeypatch.setattr(updates, "_clip_batch", lambda *a: batches.append(real_batch(*a)) or batches[-1])
    monkeypatch.setattr(updates, "erft_step", lambda student, x, *a, **k: clips.append(x) or real_step(student, x, *a, **k))
    assert run.main(["context-teacher", "--config", "toy-scenes-context-teacher", "--out", str(tmp_path), "--steps",
                     "2", "--batch_size", "2"]) == 0
    assert len(clips) == 2
    for (latents, _), x in zip(batches, clips):
        assert cfg.teacher_stage.context_min + cfg.rollout.target_frames <= x.shape[2] <= latents.shape[2]
        assert torch.equal(x, latents[:, :, -x.shape[2]:])
    with pytest.raises(ValueError, match="multiple of 6"):
        apply_overrides(preset("toy-scenes-context-teacher"), {"teacher_stage.context_max": "81"})
