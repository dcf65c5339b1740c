"""The one place that configures ``torch.distributed``: process group, gradient and metric averaging, FSDP2.

Launch (CPU ranks use gloo, CUDA ranks nccl on ``cuda:{LOCAL_RANK}``)::

    torchrun --nproc_per_node 2 -m training.run stage1 --config toy-scenes-stage1 --out outputs/stage1-ddp
    torchrun --nproc_per_node 8 -m training.run stage1 --config wan-1.3b-stage1 ...

Without torchrun's environment (``WORLD_SIZE`` unset or 1) no process group exists and every function here is a
no-op, so single-device code paths never branch on the world size themselves. Models stay single-device modules;
:func:`shard_model` applies FSDP2 as a separate step (torchtitan style).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.tensor import DTensor

from context_forcing_core.models.wan import WanModel

TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
"""Variables torchrun sets for every rank; a distributed launch needs all of them."""

BUCKET_BYTES = 256 * 2**20
"""Largest flat gradient buffer of one all-reduce call (bytes)."""


@dataclass(kw_only=True, slots=True, frozen=True)
class DistContext:
    """Where this process sits in the run; the default is a single process."""

    rank: int = 0
    """Global rank in [0, world_size)."""
    world_size: int = 1
    """Number of processes (ranks)."""
    local_rank: int = 0
    """Rank on this node (selects the GPU)."""
    device: str = "cpu"
    """Device of this rank: "cpu" or "cuda:{local_rank}"."""
    backend: str = "none"
    """"gloo" (CPU), "nccl" (CUDA) or "none" (single process, no process group)."""

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world_size or not 0 <= self.local_rank <= self.rank:
            raise ValueError(f"bad ranks: rank {self.rank}, local_rank {self.local_rank}, world {self.world_size}")
        if (self.world_size == 1) != (self.backend == "none") or self.backend not in ("none", "gloo", "nccl"):
            raise ValueError(f"backend {self.backend!r} with world size {self.world_size}")

    @property
    def is_main(self) -> bool:
        """True on rank 0, the rank that logs, prints and writes checkpoints."""
        return self.rank == 0

    def micro_batches(self, grad_accum: int) -> range:
        """Global micro-batch indices g this rank processes: its ``grad_accum`` consecutive slots of the step."""
        return range(self.rank * grad_accum, (self.rank + 1) * grad_accum)


def init_distributed(device: str) -> DistContext:
    """Read torchrun's environment and join the process group (none when ``WORLD_SIZE`` is unset or 1).

    Args:
        device: the config's device, "cpu" or "cuda"; CUDA ranks get ``cuda:{LOCAL_RANK}``.

    Returns:
        This process's :class:`DistContext`.

    Raises:
        ValueError: on a partial torchrun environment or a device this machine lacks.

    """
    env = os.environ
    world = int(env.get("WORLD_SIZE", "1"))
    if world == 1:
        if int(env.get("RANK", "0")) != 0:
            raise ValueError(f"RANK={env['RANK']} without WORLD_SIZE > 1")
        return DistContext(device=device)
    if missing := [k for k in TORCHRUN_ENV if k not in env]:
        raise ValueError(f"WORLD_SIZE={world} but {', '.join(missing)} unset; launch with torchrun")
    rank, local_rank = int(env["RANK"]), int(env["LOCAL_RANK"])
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("a CUDA config needs GPUs on every rank")
        device, backend = f"cuda:{local_rank}", "nccl"
        torch.cuda.set_device(device)
    elif device == "cpu":
        backend = "gloo"
    else:
        raise ValueError(f"device {device!r}; allowed: cpu, cuda")
    ctx = DistContext(rank=rank, world_size=world, local_rank=local_rank, device=device, backend=backend)
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world)  # MASTER_ADDR / MASTER_PORT via env://
    return ctx


def _buckets(tensors: list[Tensor]) -> Iterator[list[Tensor]]:
    """Consecutive runs of same-dtype tensors of at most :data:`BUCKET_BYTES` (one tensor may exceed it alone)."""
    bucket: list[Tensor] = []
    size = 0
    for t in tensors:
        nbytes = t.numel() * t.element_size()
        if bucket and (t.dtype != bucket[0].dtype or size + nbytes > BUCKET_BYTES):
            yield bucket
            bucket, size = [], 0
        bucket.append(t)
        size += nbytes
    if bucket:
        yield bucket


def all_reduce_gradients(model: nn.Module, ctx: DistContext) -> None:
    """Replace every ``.grad`` by its mean over ranks (data parallel); call after the last backward, before clipping.

    Gradients go through few calls: flattened into one buffer per dtype (split above :data:`BUCKET_BYTES`). A
    parameter with no gradient on any rank keeps ``grad = None``; one with a gradient on some ranks only counts as
    zero on the others, so every rank issues the same calls in the same order.

    Raises:
        ValueError: for an FSDP-sharded model, whose backward already reduces its gradients.

    """
    if ctx.world_size == 1:
        return
    params = [p for p in model.parameters() if p.requires_grad]
    if any(isinstance(p, DTensor) for p in params):
        raise ValueError("FSDP-sharded models reduce their own gradients")
    present = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=ctx.device)  # (P,)
    dist.all_reduce(present)  # how many ranks hold each gradient
    grads = []
    for p, count in zip(params, present.tolist()):
        if count > 0:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            grads.append(p.grad)
    for bucket in _buckets(grads):
        flat = torch.cat([g.reshape(-1) for g in bucket])  # (sum of numels,)
        dist.all_reduce(flat)  # sum; gloo has no AVG
        flat /= ctx.world_size
        for g, part in zip(bucket, flat.split([g.numel() for g in bucket])):
            g.copy_(part.view_as(g))


def broadcast_parameters(module: nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's parameters and buffers to every rank (once, at the start of a run)."""
    if ctx.world_size == 1:
        return
    with torch.no_grad():
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src=0)


def average_metrics(metrics: dict[str, float], ctx: DistContext) -> dict[str, float]:
    """The mean over ranks of each value (every rank must pass the same keys in the same order)."""
    if ctx.world_size == 1:
        return dict(metrics)
    values = torch.tensor(list(metrics.values()), dtype=torch.float64, device=ctx.device)  # (K,)
    dist.all_reduce(values)
    return {k: v / ctx.world_size for k, v in zip(metrics, values.tolist())}


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (e.g. after rank 0 wrote a checkpoint)."""
    if ctx.world_size > 1:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    """Leave the process group at the end of a run."""
    if ctx.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def shard_model(model: WanModel, ctx: DistContext) -> WanModel:
    """Shard a Wan model with FSDP2 (``fully_shard``): each block's cross-attention, each block, then the root.

    Modes: data parallel (:func:`all_reduce_gradients` on full replicas) is the exact-equivalent mode, the same
    update as one process accumulating the global batch up to float summation order. FSDP computes the same mean
    gradient (its reduce-scatter averages over ranks) but holds 1 / world_size of each parameter, gradient and
    optimiser state per rank, for the Wan presets on CUDA. Parameters become DTensors: clip with
    ``clip_grad_norm_`` (returns a DTensor norm), checkpoint through ``torch.distributed.checkpoint.state_dict``,
    and never call :func:`all_reduce_gradients` on it. Forward passes all-gather, so every rank must call the model
    the same number of times per step (rollout lengths and exit steps shared by all ranks).

    ``WanModel.encode_text`` and ``CrossAttention.text_kv`` read block weights outside ``forward``; they are
    registered as FSDP forward methods so the weights are gathered for them too.

    Returns:
        The same module, sharded in place; unchanged on world size 1.

    """
    if ctx.world_size == 1:
        return model
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard, register_fsdp_forward_method

    mesh = init_device_mesh(torch.device(ctx.device).type, (ctx.world_size,))
    for block in model.blocks:
        fully_shard(block.cross_attn, mesh=mesh)
        register_fsdp_forward_method(block.cross_attn, "text_kv")
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
    register_fsdp_forward_method(model, "encode_text")
    return model
