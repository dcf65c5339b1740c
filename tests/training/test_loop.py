"""The training loop: the toy teacher learns; DMD steps update student and critic as scheduled; the update comes
from the registry."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import training.loop as loop
import training.updates as updates
from training.config import apply_overrides
from training.loop import build_run, train_step
from training.presets import preset


def test_the_toy_teacher_learns_the_toy_world():
    run = build_run(apply_overrides(preset("toy-scenes-teacher"), {"rollout.frames": "9", "rollout.target_frames": "9"}))
    losses = [train_step(run)["flow_loss"] for _ in range(25)]
    assert run.state.critic is None and run.teacher is None
    assert sum(losses[-5:]) < 0.85 * sum(losses[:5]), losses  # deterministic: fixed seed


def test_dmd_steps_follow_the_update_ratio():
    cfg = apply_overrides(preset("toy-scenes-stage1"), {"optim.gen_update_every": "2", "rollout.frames": "6",
                                                        "rollout.target_frames": "6"})
    run = build_run(cfg)
    student = [p.detach().clone() for p in run.state.student.parameters()]
    first = train_step(run)  # step 0: student and critic
    after_first = [p.detach().clone() for p in run.state.student.parameters()]
    second = train_step(run)  # step 1: critic only
    assert "dmd_loss" in first and "dmd_loss" not in second and "critic_loss" in second
    assert any(not torch.equal(a, b) for a, b in zip(student, after_first))
    assert all(torch.equal(a, b) for a, b in zip(after_first, run.state.student.parameters()))
    assert run.state.data_cursor == 3  # one prompt per update and micro-batch


def test_the_teacher_loss_uses_the_configured_weighting(monkeypatch):
    seen = []
    real = updates.flow_matching_loss
    monkeypatch.setattr(updates, "flow_matching_loss", lambda *a, **k: seen.append(k.get("weighting")) or real(*a, **k))
    for scheme in ("bell", "none"):
        run = build_run(apply_overrides(preset("toy-scenes-teacher"), {"teacher_stage.flow_weighting": scheme,
                                                                        "rollout.frames": "6",
                                                                        "rollout.target_frames": "6"}))
        train_step(run)
    assert seen == ["bell", "none"]
    with pytest.raises(ValueError, match="flow_weighting"):
        apply_overrides(preset("toy-scenes-teacher"), {"teacher_stage.flow_weighting": "cosine"})


def test_the_high_noise_share_draws_teacher_timesteps_at_shift_50(monkeypatch):
    seen = []
    real = updates.flow_matching_loss

    def record(flow, x0, noise, t, **kw):
        seen.append(t.clone())
        return real(flow, x0, noise, t, **kw)

    monkeypatch.setattr(updates, "flow_matching_loss", record)
    for fraction in ("0", "1", None):
        overrides = {"rollout.frames": "6", "rollout.target_frames": "6", "batch_size": "64",
                     "teacher_stage.timestep_shift": "1"}
        if fraction is not None:
            overrides["teacher_stage.high_noise_fraction"] = fraction
        train_step(build_run(apply_overrides(preset("toy-scenes-teacher"), overrides)))
    none, high, default = seen
    assert torch.equal(none, default)  # fraction 0 leaves the random stream as it was
    assert none.median() < 700 and high.median() > 950 and high.min() > 200  # uniform vs shift 50 (median 980)


def test_train_step_runs_the_update_registered_for_the_stage_and_objective(monkeypatch):
    from context_forcing_core.toyworld.exact_teacher import ExactTeacher
    from training.worlds import scenes

    expected = {"toy-scenes-teacher": updates.teacher_update, "toy-scenes-context-teacher": updates.context_teacher_update,
                "toy-scenes-ode-init": updates.ode_update, "toy-scenes-stage1": updates.dmd_update,
                "toy-scenes-stage2-dmd": updates.dmd_update, "wan-1.3b-stage2": updates.dmd_update,
                "toy-scenes-stage1-regression": scenes.scheduled_update, "toy-scenes-stage2": scenes.scheduled_update}
    assert {name: updates.update_for(preset(name)) for name in expected} == expected
    cpu = torch.device("cpu")
    assert isinstance(updates.closed_form_teacher(preset("toy-scenes-stage1"), cpu), ExactTeacher)
    assert updates.closed_form_teacher(preset("toy-scenes-ode-init"), cpu) is None  # an architecture preset
    with pytest.raises(ValueError, match="registered already"):
        updates.register_update("stage1", "dmd")(updates.dmd_update)
    run = build_run(apply_overrides(preset("toy-scenes-teacher"), {"rollout.frames": "3", "rollout.target_frames": "3"}))
    monkeypatch.setitem(updates.UPDATES, ("teacher", updates.ANY_OBJECTIVE), lambda r: {"seen": float(r is run)})
    assert train_step(run) == {"step": 0, "seen": 1.0} and run.state.step == 1


def test_the_loop_holds_no_world_code():
    import ast

    tree = ast.parse(Path(loop.__file__).read_text())
    imported = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    assert imported and not any(m.split(".")[-1] in ("toyworld", "worlds", "samples") or "toyworld" in m
                                for m in imported), imported
    with pytest.raises(ValueError, match="registered already"):
        updates.register_teacher("exact")(lambda cfg, device: None)
