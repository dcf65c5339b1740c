"""ODE pair cache: shards equal direct teacher solves, resume skips written shards, bad shards are named."""

from __future__ import annotations

import pytest
import torch
from conftest import random_model
from safetensors import safe_open
from safetensors.torch import save_file

from context_forcing_core.objectives.ode import teacher_trajectory
from training.ode_pairs import OdePairs, generate_pairs


def _texts(model, n):
    g = torch.Generator().manual_seed(3)
    return torch.randn(n, 2, model.config.text_dim, generator=g)


def test_shards_hold_the_teacher_solves_and_resume_skips_them(tmp_path):
    teacher = random_model()
    texts, uncond = _texts(teacher, 5), torch.zeros(1, 2, teacher.config.text_dim)
    kw = dict(num_pairs=5, batch_size=2, shape=(4, 3, 2, 2), timesteps_guidance=(8, 2.0), seed=1)
    paths = generate_pairs(teacher, lambda i: texts[i], uncond, tmp_path, **kw)
    assert [p.name for p in paths] == [f"shard_0000{i}.safetensors" for i in range(3)]
    stamps = [p.stat().st_mtime_ns for p in paths]
    paths[1].unlink()
    again = generate_pairs(teacher, lambda i: texts[i], uncond, tmp_path, **kw)
    assert again == paths and again[0].stat().st_mtime_ns == stamps[0] and paths[1].exists()

    pairs = OdePairs(paths)
    assert len(pairs) == 5
    traj, text = pairs.batch([2, 3])  # shard 1, rebuilt after the deletion
    noise = torch.randn((2, 4, 3, 2, 2), generator=torch.Generator().manual_seed(1 * 1_000_003 + 1))
    direct = teacher_trajectory(teacher, noise, texts[2:4], uncond.expand(2, -1, -1), num_steps=8, guidance=2.0)
    torch.testing.assert_close(traj.states, direct.states)
    torch.testing.assert_close(traj.x0, direct.x0)
    torch.testing.assert_close(text, texts[2:4])
    assert traj.timesteps == pytest.approx(direct.timesteps)


def test_a_shard_without_a_key_is_named(tmp_path):
    bad = tmp_path / "shard_00000.safetensors"
    save_file({"x0": torch.zeros(1, 4, 3, 2, 2), "text": torch.zeros(1, 2, 8)}, str(bad), metadata={"timesteps": "1"})
    with pytest.raises(ValueError, match=r"shard_00000.safetensors: missing key 'states'"):
        OdePairs([bad])


def test_a_bfloat16_teacher_caches_bfloat16_and_batches_read_float32(tmp_path):
    teacher = random_model().to(torch.bfloat16)
    texts, uncond = _texts(teacher, 3), torch.zeros(1, 2, teacher.config.text_dim)
    paths = generate_pairs(teacher, lambda i: texts[i], uncond, tmp_path, num_pairs=3, batch_size=2,
                           shape=(4, 3, 2, 2), timesteps_guidance=(8, 2.0), seed=0)
    with safe_open(str(paths[0]), "pt") as f:
        assert {f.get_slice(k).get_dtype() for k in ("states", "x0", "text")} == {"BF16"}
        stored = f.get_tensor("x0")[1:2]
    pairs = OdePairs(paths)
    traj, text = pairs.batch([2, 1])  # across shards, in the order asked
    assert traj.states.dtype == traj.x0.dtype == text.dtype == torch.float32
    assert traj.states.shape == (2, 4, 4, 3, 2, 2) and len(pairs) == 3
    torch.testing.assert_close(traj.x0[1:2], stored.float(), rtol=0, atol=0)
    torch.testing.assert_close(text, texts[[2, 1]].bfloat16().float(), rtol=0, atol=0)
