"""The training CLI: flag surface, dry runs (toy on CPU, Wan 1.3B on the meta device), resolved config on disk."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from training import run


def test_flag_surface_is_frozen(capsys):
    with pytest.raises(SystemExit):
        run.main(["--help"])
    help_text = capsys.readouterr().out
    for flag in ("stage", "--config", "--out", "--dry-run", "--teacher", "--init", "--resume", "--run", "--no-ema"):
        assert flag in help_text
    assert "{prepare-data,teacher,context-teacher,ode-init,stage1,stage2,export,eval}" in help_text


def test_eval_flag_surface_is_frozen(capsys):
    with pytest.raises(SystemExit):
        run.main(["eval", "--preset", "scene-benchmark", "--help"])
    help_text = capsys.readouterr().out
    for flag in ("--preset", "--student", "--out", "--schedules", "--seeds", "--seconds", "--tau", "--methods",
                 "--threads", "{scene-benchmark}"):
        assert flag in help_text


def test_toy_dry_run_writes_the_resolved_config(tmp_path, capsys):
    assert run.main(["stage1", "--config", "toy-scenes-stage1", "--dry-run", "--out", str(tmp_path), "--steps", "3"]) == 0
    out = capsys.readouterr().out
    assert "stage1 dry run on cpu: student chunk (1, 48, 3, 8, 8), teacher clip (1, 48, 21, 8, 8)" in out
    assert json.loads((tmp_path / "config.json").read_text())["steps"] == 3


def test_wan_stage2_dry_run_validates_on_the_meta_device(tmp_path, capsys):
    assert run.main(["stage2", "--config", "wan-1.3b-stage2", "--dry-run", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "student chunk (1, 16, 3, 60, 104), teacher clip (1, 16, 21, 60, 104)" in out
    assert "student: 1419.0 M parameters" in out
    report = run.dry_run(run.load_config("stage2", "wan-1.3b-stage2", {}))
    assert report.device == "meta"
    kv = report.memory_bytes["student KV cache (bounded memory)"]
    assert kv == 21 * 30 * 2 * 1560 * 1536 * 2  # 21 frames x 30 layers x (k, v) x tokens x dim x bf16
    sharded = run.dry_run(run.load_config("stage2", "wan-1.3b-stage2", {"runtime.fsdp": "true"}), world_size=8).memory_bytes
    whole = report.memory_bytes
    adam = [k for k in whole if k.startswith("AdamW")][0]
    assert next(v for k, v in sharded.items() if k.startswith("AdamW")) == whole[adam] // 8
    assert sharded["frozen teacher weights"] == whole["frozen teacher weights"] == report.parameters["teacher"] * 2
    assert sharded["student KV cache (bounded memory)"] == kv


def test_bad_command_lines_are_usage_errors(tmp_path):
    with pytest.raises(SystemExit) as err:
        run.main(["stage1", "--config", "toy-scenes-stage2", "--dry-run", "--out", str(tmp_path)])
    assert err.value.code == 2
    with pytest.raises(SystemExit):
        run.main(["stage1", "--config", "toy-scenes-stage1", "--steps"])


def params_of(folder):
    from context_forcing_core import load_model

    return [p.detach() for p in load_model(folder / "student.safetensors").parameters()] + [
        p.detach() for p in load_model(folder / "critic.safetensors").parameters()]


def test_training_then_kill_and_resume_matches_a_straight_run(tmp_path):
    common = ["stage1", "--config", "toy-scenes-stage1", "--optim.gen_update_every", "2", "--logging.log_every", "1",
              "--logging.save_every", "1", "--rollout.frames", "6", "--rollout.target_frames", "6"]
    assert run.main(common + ["--out", str(tmp_path / "a"), "--steps", "3"]) == 0
    assert run.main(common + ["--out", str(tmp_path / "b"), "--steps", "2"]) == 0  # killed after step 2
    assert run.main(common + ["--out", str(tmp_path / "b"), "--steps", "3", "--resume"]) == 0
    a, b = params_of(tmp_path / "a" / "step_000003"), params_of(tmp_path / "b" / "step_000003")
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    start = params_of(tmp_path / "a" / "step_000001")
    assert any(not torch.equal(x, y) for x, y in zip(start, a)), "training changed the weights"
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [0, 1, 2]
    assert all(np.isfinite(json.loads(line)["critic_loss"]) for line in lines)


def test_wan_presets_are_dry_run_only_for_now(tmp_path):
    with pytest.raises(SystemExit) as err:
        run.main(["stage1", "--config", "wan-1.3b-stage1", "--out", str(tmp_path)])
    assert err.value.code == 2


def test_export_writes_the_ema_student_with_provenance(tmp_path):
    from safetensors import safe_open

    from context_forcing_core import load_model
    from context_forcing_core.models.family import recognise

    run_dir, out = tmp_path / "teacher", tmp_path / "exported.safetensors"
    assert run.main(["teacher", "--config", "toy-scenes-teacher", "--out", str(run_dir), "--steps", "1",
                     "--rollout.frames", "3", "--rollout.target_frames", "3", "--batch_size", "1",
                     "--memory", "self_forcing"]) == 0
    assert run.main(["export", "--run", str(run_dir), "--out", str(out)]) == 0
    exported, ema = load_model(out), load_model(run_dir / "step_000001" / "student_ema.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(exported.parameters(), ema.parameters()))
    with safe_open(str(out), "pt") as f:
        meta = f.metadata()
    assert meta["context_forcing.checkpoint"] == "step_000001/student_ema.safetensors"
    assert json.loads(meta["context_forcing.run_config"])["stage"] == "teacher"
    assert recognise(str(out), {}, meta).family.memory == "self_forcing"  # the loader samples it with its memory
    half = tmp_path / "half.safetensors"
    assert run.main(["export", "--run", str(run_dir), "--out", str(half), "--dtype", "bfloat16"]) == 0
    assert all(a.dtype == torch.bfloat16 and torch.equal(a, b.to(torch.bfloat16))
               for a, b in zip(load_model(half).parameters(), ema.parameters()))
    with pytest.raises(SystemExit):
        run.main(["export", "--run", str(tmp_path / "missing"), "--out", str(out)])
    with pytest.raises(SystemExit):
        run.main(["export", "--run", str(run_dir), "--out", str(half), "--dtype", "float16"])


def test_export_step_picks_an_earlier_checkpoint(tmp_path):
    from context_forcing_core import load_model

    run_dir, out = tmp_path / "teacher", tmp_path / "first.safetensors"
    assert run.main(["teacher", "--config", "toy-scenes-teacher", "--out", str(run_dir), "--steps", "2",
                     "--logging.save_every", "1", "--rollout.frames", "3", "--rollout.target_frames", "3",
                     "--batch_size", "1"]) == 0
    assert run.main(["export", "--run", str(run_dir), "--out", str(out), "--step", "1"]) == 0
    first, second = (load_model(run_dir / f"step_00000{i}" / "student_ema.safetensors") for i in (1, 2))
    exported = load_model(out)
    assert all(torch.equal(a, b) for a, b in zip(exported.parameters(), first.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(exported.parameters(), second.parameters()))
    with pytest.raises(SystemExit):
        run.main(["export", "--run", str(run_dir), "--out", str(out), "--step", "5"])
