"""Data parallel training: world-size-independent draws, gradient averaging over gloo ranks, and the equivalence of
two ranks x one micro-batch with one process x two micro-batches (same global batch).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from context_forcing_core import load_model
from training import run
from training.distributed import (
    DistContext,
    all_reduce_gradients,
    average_metrics,
    barrier,
    broadcast_parameters,
    init_distributed,
    shard_model,
    shutdown,
)
from training.rng import micro_generator, micro_seed, step_generator

REPO = Path(__file__).resolve().parents[2]
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def launch(args: list[str], world_size: int = 2, timeout: float = 120.0) -> list[str]:
    """Start ``python ARGS`` on ``world_size`` ranks with the environment torchrun sets; their combined outputs."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS}
    procs = []
    for rank in range(world_size):
        env = base | {"RANK": str(rank), "WORLD_SIZE": str(world_size), "LOCAL_RANK": str(rank),
                      "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1",
                      "PYTHONPATH": str(REPO)}
        procs.append(subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    try:
        outs = [p.communicate(timeout=timeout)[0] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for rank, (p, out) in enumerate(zip(procs, outs)):
        assert p.returncode == 0 or _teardown_abort(p.returncode, out), f"rank {rank} failed:\n{out}"
    return outs


def _teardown_abort(returncode: int, out: str) -> bool:
    """A rank that finished its work (it printed ``WORK DONE``) and was then aborted by gloo's worker threads while
    the interpreter shut down (SIGABRT, "terminate called without an active exception": a known race of torch's
    gloo teardown on a loaded machine, not of this code). Its results were written before; they are still checked.
    """
    return returncode == -6 and "WORK DONE" in out and out.rstrip().endswith("terminate called without an active exception")


# ---------------------------------------------------------------------------------------------------------------
# Counter-based generators


def test_micro_generator_is_a_stable_function_of_its_four_arguments():
    assert micro_seed(0, 0, 0, "step") == 16442451274531475726  # BLAKE2b: the same in every process and Python run
    draw = lambda *key: torch.randn(8, generator=micro_generator(*key))  # noqa: E731
    base = (3, 10, 2, "critic")
    assert torch.equal(draw(*base), draw(*base))
    for changed in ((4, 10, 2, "critic"), (3, 11, 2, "critic"), (3, 10, 3, "critic"), (3, 10, 2, "generator")):
        assert not torch.equal(draw(*base), draw(*changed)), changed
    assert torch.equal(torch.rand(4, generator=step_generator(3, 10)), torch.rand(4, generator=micro_generator(3, 10, 0,
                                                                                                            "step")))
    with pytest.raises(ValueError):
        micro_generator(0, -1, 0, "critic")


def test_ranks_cover_the_global_micro_batches_once():
    ranks = [DistContext(rank=r, world_size=3, local_rank=r, backend="gloo") for r in range(3)]
    assert [list(c.micro_batches(2)) for c in ranks] == [[0, 1], [2, 3], [4, 5]]
    assert ranks[0].is_main and not ranks[1].is_main
    with pytest.raises(ValueError):
        DistContext(world_size=2)  # several ranks need a backend


# ---------------------------------------------------------------------------------------------------------------
# One process: everything is a no-op


def test_world_size_one_is_a_no_op(monkeypatch):
    for var in TORCHRUN_VARS:
        monkeypatch.delenv(var, raising=False)
    ctx = init_distributed("cpu")
    assert ctx == DistContext() and ctx.backend == "none" and not torch.distributed.is_initialized()
    model = torch.nn.Linear(3, 2)
    model.weight.grad = torch.arange(6.0).reshape(2, 3)
    grad, weights = model.weight.grad, [p.detach().clone() for p in model.parameters()]
    all_reduce_gradients(model, ctx)
    broadcast_parameters(model, ctx)
    assert model.weight.grad is grad and torch.equal(grad, torch.arange(6.0).reshape(2, 3)) and model.bias.grad is None
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters()))
    assert average_metrics({"loss": 0.25}, ctx) == {"loss": 0.25}
    assert shard_model(model, ctx) is model
    barrier(ctx)
    shutdown(ctx)
    monkeypatch.setenv("WORLD_SIZE", "2")  # a partial torchrun environment is refused, not half-used
    with pytest.raises(ValueError, match="MASTER_ADDR"):
        init_distributed("cpu")


# ---------------------------------------------------------------------------------------------------------------
# Two gloo ranks: collectives against hand-computed values

WORKER = r"""
import json, sys, torch
import training.distributed as D
from context_forcing_core.models.config import micro
from context_forcing_core.models.wan import WanModel

ctx = D.init_distributed("cpu")
r, out = ctx.rank, {}

# all_reduce_gradients: grad of parameter i on rank r is (r + 1) * (i + 1) * arange; mixed dtypes, tiny buckets
D.BUCKET_BYTES = 64
params = [torch.nn.Parameter(torch.zeros(n, dtype=dt)) for n, dt in
          ((5, torch.float32), (40, torch.float32), (3, torch.bfloat16), (4, torch.float32), (2, torch.float32))]
frozen = torch.nn.Parameter(torch.zeros(2), requires_grad=False)
model = torch.nn.ParameterList(params + [frozen])
for i, p in enumerate(params[:3]):
    p.grad = ((r + 1) * (i + 1) * torch.arange(p.numel())).to(p.dtype)
if r == 0:
    params[3].grad = torch.ones(4)  # only rank 0 has this one: counts as zero on rank 1
frozen.grad = torch.full((2,), float(r))  # not trainable: left alone
D.all_reduce_gradients(model, ctx)
out["grads"] = [None if p.grad is None else p.grad.float().tolist() for p in params]
out["frozen"] = frozen.grad.tolist()

out["metrics"] = D.average_metrics({"a": float(r), "b": 10.0 * r + 1}, ctx)

torch.manual_seed(r)  # different weights per rank until the broadcast
net = torch.nn.Linear(3, 2)
D.broadcast_parameters(net, ctx)
out["broadcast"] = [p.tolist() for p in net.parameters()]

# FSDP2 vs data parallel on the micro Wan model: each rank its own batch, same mean gradient expected
torch.manual_seed(0)
replica = WanModel(micro())
sharded = WanModel(micro())
sharded.load_state_dict(replica.state_dict())
D.shard_model(sharded, ctx)
cfg = replica.config
g = torch.Generator().manual_seed(100 + r)
x, text = torch.randn(1, cfg.in_channels, 3, 4, 4, generator=g), torch.randn(1, 2, cfg.text_dim, generator=g)
for m in (replica, sharded):
    y = m(x, torch.full((1,), 500.0), m.encode_text(text))  # encode_text reads block weights outside forward
    m(y, torch.full((1,), 250.0), text).square().mean().backward()  # two forwards, one backward
D.all_reduce_gradients(replica, ctx)
diffs = [(p.grad.full_tensor() - q.grad).abs().max().item() for p, q in zip(sharded.parameters(), replica.parameters())]
out["fsdp_max_diff"], out["fsdp_max_grad"] = max(diffs), max(q.grad.abs().max().item() for q in replica.parameters())
out["fsdp_sharded"] = type(next(sharded.parameters())).__name__
D.barrier(ctx)
json.dump(out, open(sys.argv[1] + f"/rank{r}.json", "w"))
print("WORK DONE", flush=True)
D.shutdown(ctx)
"""


@pytest.fixture(scope="module")
def gloo_results(tmp_path_factory) -> list[dict]:
    """Run WORKER on two gloo ranks once; each rank's JSON results."""
    folder = tmp_path_factory.mktemp("gloo")
    launch(["-c", WORKER, str(folder)])
    return [json.loads((folder / f"rank{r}.json").read_text()) for r in range(2)]


def test_all_reduce_gradients_is_the_mean_over_ranks(gloo_results):
    sizes = (5, 40, 3)
    expected = [((1 + 2) / 2 * (i + 1) * torch.arange(n, dtype=torch.float32)).tolist() for i, n in enumerate(sizes)]
    expected += [[0.5] * 4, None]  # one rank's ones averaged with the other's implicit zeros; no gradient anywhere
    for rank, res in enumerate(gloo_results):
        assert res["grads"] == expected, rank
        assert res["frozen"] == [float(rank)] * 2


def test_metrics_and_broadcast_agree_on_every_rank(gloo_results):
    torch.manual_seed(0)
    rank0 = [p.tolist() for p in torch.nn.Linear(3, 2).parameters()]
    for res in gloo_results:
        assert res["metrics"] == {"a": 0.5, "b": 6.0}
        assert res["broadcast"] == rank0


def test_fsdp_gradients_equal_data_parallel_on_cpu(gloo_results):
    for res in gloo_results:
        print(f"FSDP vs data parallel: max |grad diff| {res['fsdp_max_diff']:.2e} (max |grad| {res['fsdp_max_grad']:.2e})")
        assert res["fsdp_sharded"] == "DTensor"
        assert res["fsdp_max_diff"] <= 1e-5 * (1 + res["fsdp_max_grad"])


# ---------------------------------------------------------------------------------------------------------------
# The training loop: two ranks equal one process with the same global batch

COMMON = ["stage1", "--config", "toy-scenes-stage1", "--optim.gen_update_every", "2", "--rollout.frames", "6",
          "--rollout.target_frames", "6", "--steps", "3", "--logging.log_every", "1", "--logging.save_every", "1"]


def networks(folder: Path) -> list[torch.Tensor]:
    """Student, critic and EMA parameters of a checkpoint folder."""
    return [p.detach() for name in ("student", "critic", "student_ema")
            for p in load_model(folder / f"{name}.safetensors").parameters()]


def max_diff(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    """Largest absolute difference between matching tensors."""
    return max((x - y).abs().max().item() for x, y in zip(a, b))


def resume_after_step_2(source: Path, out: Path, args: list[str]) -> Path:
    """Copy ``source``'s step-2 checkpoint into ``out`` as if killed there, resume on two ranks; the step-3 folder."""
    (out / "step_000002").mkdir(parents=True)
    for item in (source / "step_000002").iterdir():
        (out / "step_000002" / item.name).write_bytes(item.read_bytes())
    (out / "latest").write_text("step_000002")
    launch(["-m", "training.run", *args, "--grad_accum", "1", "--out", str(out), "--resume"])
    return out / "step_000003"


@pytest.fixture(scope="module")
def two_rank_run(tmp_path_factory) -> Path:
    """Three Stage 1 steps on two gloo ranks, one micro-batch each (global batch 2)."""
    out = tmp_path_factory.mktemp("dp") / "run"
    launch(["-m", "training.run", *COMMON, "--grad_accum", "1", "--out", str(out)])
    return out


def test_two_ranks_equal_one_process_accumulating_the_same_global_batch(two_rank_run, tmp_path, monkeypatch):
    for var in TORCHRUN_VARS:
        monkeypatch.delenv(var, raising=False)
    assert run.main([*COMMON, "--grad_accum", "2", "--out", str(tmp_path)]) == 0
    single, dp = networks(tmp_path / "step_000003"), networks(two_rank_run / "step_000003")
    scale = max(p.abs().max().item() for p in single)
    diff = max_diff(single, dp)
    print(f"2 ranks x grad_accum 1 vs 1 process x grad_accum 2: max |param diff| {diff:.2e} (max |param| {scale:.2f})")
    assert diff <= 1e-5 * (1 + scale)  # float32; only the order of the gradient sums differs
    start = networks(tmp_path / "step_000001")
    assert max_diff(start, single) > 1e-4, "steps 2-3 changed the weights"
    assert run.main([*COMMON, "--grad_accum", "1", "--out", str(tmp_path / "half")]) == 0
    half = networks(tmp_path / "half" / "step_000003")
    assert max_diff(half, dp) > 1e-4, "the global batch matters"
    logs = [[json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
            for folder in (tmp_path, two_rank_run)]
    assert [m["step"] for m in logs[1]] == [0, 1, 2]  # rank 0 alone logs
    for a, b in zip(*logs):
        for key in ("dmd_loss", "critic_loss", "critic_grad_norm"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-7), key  # losses: means over the ranks
    saved = torch.load(two_rank_run / "step_000003" / "state.pt", weights_only=True)
    assert saved["data_cursor"] == 5 * 2  # 2 student + 3 critic updates, each past the global batch of 2 prompts


def test_two_ranks_resume_exactly(two_rank_run, tmp_path):
    resumed = networks(resume_after_step_2(two_rank_run, tmp_path, COMMON))
    straight = networks(two_rank_run / "step_000003")
    assert all(torch.equal(a, b) for a, b in zip(resumed, straight))
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [2]


# ---------------------------------------------------------------------------------------------------------------
# FSDP in the loop: sharded student, critic and EMA give the same run as one process

FSDP = [*COMMON, "--runtime.fsdp", "true"]


@pytest.fixture(scope="module")
def fsdp_run(tmp_path_factory) -> Path:
    """Three Stage 1 steps with FSDP-sharded networks on two gloo ranks, one micro-batch each."""
    out = tmp_path_factory.mktemp("fsdp") / "run"
    launch(["-m", "training.run", *FSDP, "--grad_accum", "1", "--out", str(out)])
    return out


def test_fsdp_ranks_equal_one_process_and_resume_exactly(fsdp_run, tmp_path, monkeypatch):
    for var in TORCHRUN_VARS:
        monkeypatch.delenv(var, raising=False)
    assert run.main([*FSDP, "--grad_accum", "2", "--out", str(tmp_path / "single")]) == 0
    single, sharded = networks(tmp_path / "single" / "step_000003"), networks(fsdp_run / "step_000003")
    scale = max(p.abs().max().item() for p in single)
    diff = max_diff(single, sharded)
    print(f"FSDP 2 ranks x grad_accum 1 vs 1 process x grad_accum 2: max |param diff| {diff:.2e} (max |param| "
          f"{scale:.2f})")
    assert diff <= 1e-5 * (1 + scale)
    saved = torch.load(fsdp_run / "step_000003" / "state.pt", weights_only=True)
    moments = [s["exp_avg"] for s in saved["student_optim"]["state"].values()]
    assert all(type(m) is torch.Tensor for m in moments)  # gathered: full tensors, loadable anywhere
    resumed = networks(resume_after_step_2(fsdp_run, tmp_path / "resumed", FSDP))
    assert all(torch.equal(a, b) for a, b in zip(resumed, sharded))
