"""Everything a resume needs, in one object, and its atomic checkpoint on disk.

A checkpoint is a folder ``step_NNNNNN/`` holding ``student.safetensors``, ``critic.safetensors`` and
``student_ema.safetensors`` (plain Wan keys + config metadata, loadable by ``context_forcing_core.load_model`` and
ComfyUI) and ``state.pt`` (optimisers, step, data cursor, ERFT banks; read back with ``weights_only=True``).
No generator state is saved: the loop's draws are a pure function of (seed, step, micro-batch), see
``training.rng``. The folder is written under a temporary name and renamed, then ``latest`` is replaced
atomically, so a crash never leaves a half-written checkpoint that a resume would pick up.
"""

from __future__ import annotations

import copy
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributed.tensor import DTensor, distribute_tensor

from context_forcing_core.atomic import write_atomic
from context_forcing_core.models.loading import load_model, save_model
from context_forcing_core.models.wan import WanModel
from context_forcing_core.objectives.erft import ErrorBank


@dataclass(kw_only=True, slots=True)
class TrainState:
    """Student, critic, EMA, optimisers, step and data cursor of a distillation run (the RNG derives from the step)."""

    student: WanModel
    """The network being trained (the teacher itself in the teacher stage)."""
    ema: WanModel
    """Exponential moving average of the student (inference weights once ``ema_start`` has passed)."""
    student_optim: torch.optim.Optimizer
    critic: WanModel | None = None
    """Fake score of the DMD stages; None in single-network stages."""
    critic_optim: torch.optim.Optimizer | None = None
    bank: ErrorBank | None = None
    """ERFT error banks of the context-teacher stage (this rank's; rank 0's are checkpointed)."""
    step: int = 0
    """Completed optimiser steps."""
    data_cursor: int = 0
    """Index of the next prompt or clip to read."""

    def __post_init__(self) -> None:
        if (self.critic is None) != (self.critic_optim is None):
            raise ValueError("critic and critic_optim come together")

    def networks(self) -> list[tuple[str, WanModel]]:
        """Checkpointed networks by file stem."""
        nets = [("student", self.student), ("student_ema", self.ema)]
        return nets + ([("critic", self.critic)] if self.critic is not None else [])


def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """Ema <- decay * ema + (1 - decay) * model, parameter by parameter, in place and without gradient."""
    with torch.no_grad():
        for e, p in zip(ema.parameters(), model.parameters()):
            e.lerp_(p.detach().to(e.dtype), 1.0 - decay)


def ema_decay_at(step: int, *, decay: float, start: int, warmup: bool) -> float:
    """The EMA decay at ``step``: 0 (a copy) before ``start``, then ``decay``, warmed up by
    min(decay, (1 + n) / (10 + n)) for the n-th update from ``start`` when ``warmup``.
    """
    if step < start:
        return 0.0
    n = step - start
    return min(decay, (1 + n) / (10 + n)) if warmup else decay


def new_ema(model: WanModel) -> WanModel:
    """A frozen copy of ``model`` to average into."""
    return copy.deepcopy(model).requires_grad_(False).eval()


def _full(value: Any) -> Any:
    """A DTensor gathered to a full tensor (a collective), anything else as it is."""
    return value.full_tensor() if isinstance(value, DTensor) else value


def full_state_dict(model: nn.Module) -> dict[str, Tensor]:
    """The model's weights as full tensors; a collective when FSDP-sharded (every rank calls it, in the same order)."""
    return {k: _full(v) for k, v in model.state_dict().items()}


def full_optimizer_state(optim: torch.optim.Optimizer) -> dict:
    """``optim.state_dict()`` with sharded moments gathered (a collective when the parameters are FSDP-sharded)."""
    saved = optim.state_dict()
    saved["state"] = {i: {k: _full(v) for k, v in s.items()} for i, s in saved["state"].items()}
    return saved


def save_checkpoint(state: TrainState, run_dir: Path, *, write: bool = True) -> Path:
    """Write ``run_dir/step_NNNNNN`` atomically and point ``run_dir/latest`` at it; returns the folder.

    With FSDP-sharded networks every rank must call this (the shards are gathered) and only one passes ``write``.
    """
    final = run_dir / f"step_{state.step:06d}"
    weights = {name: full_state_dict(model) for name, model in state.networks()}
    optims = {"student_optim": full_optimizer_state(state.student_optim),
              "critic_optim": None if state.critic_optim is None else full_optimizer_state(state.critic_optim)}
    if not write:
        return final
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / f".tmp_step_{state.step:06d}_{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, model in state.networks():
        save_model(model, tmp / f"{name}.safetensors", state_dict=weights[name])
    torch.save(
        {
            "step": state.step,
            "data_cursor": state.data_cursor,
            **optims,
            "bank": None if state.bank is None else state.bank.state_dict(),
        },
        tmp / "state.pt",
    )
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    write_atomic(run_dir / "latest", final.name)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The folder ``run_dir/latest`` names, or None when the run has no checkpoint yet."""
    pointer = run_dir / "latest"
    return run_dir / pointer.read_text().strip() if pointer.exists() else None


def load_checkpoint(state: TrainState, folder: Path) -> None:
    """Restore ``state`` in place from a checkpoint folder written by :func:`save_checkpoint`."""
    for name, model in state.networks():
        loaded = load_model(folder / f"{name}.safetensors", dtype=next(model.parameters()).dtype)
        with torch.no_grad():
            for p, q in zip(model.parameters(), loaded.parameters()):
                p.copy_(_like(p, q))
    saved = torch.load(folder / "state.pt", weights_only=True, map_location="cpu")
    state.step, state.data_cursor = int(saved["step"]), int(saved["data_cursor"])
    _load_optimizer(state.student_optim, saved["student_optim"])
    if state.critic_optim is not None:
        _load_optimizer(state.critic_optim, saved["critic_optim"])
    if state.bank is not None and saved.get("bank") is not None:
        state.bank.load_state_dict(saved["bank"])


def _like(param: Tensor, full: Tensor) -> Tensor:
    """``full`` laid out as ``param``: sharded the same way when ``param`` is an FSDP DTensor."""
    full = full.detach().to(param.device)
    if isinstance(param, DTensor):
        return distribute_tensor(full, param.device_mesh, param.placements)
    return full


def _load_optimizer(optim: torch.optim.Optimizer, saved: dict) -> None:
    """Load a :func:`full_optimizer_state`, re-sharding moments of FSDP parameters."""
    params = [p for group in optim.param_groups for p in group["params"]]
    for i, entry in saved["state"].items():
        for key, value in entry.items():
            if isinstance(value, Tensor) and value.shape == params[i].shape and value.ndim > 0:
                entry[key] = _like(params[i], value)
    optim.load_state_dict(saved)
