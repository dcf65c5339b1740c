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

import torch
from torch import nn

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


def new_ema(model: WanModel) -> WanModel:
    """A frozen copy of ``model`` to average into."""
    return copy.deepcopy(model).requires_grad_(False).eval()


def save_checkpoint(state: TrainState, run_dir: Path) -> Path:
    """Write ``run_dir/step_NNNNNN`` atomically and point ``run_dir/latest`` at it; returns the folder."""
    run_dir.mkdir(parents=True, exist_ok=True)
    final = run_dir / f"step_{state.step:06d}"
    tmp = run_dir / f".tmp_step_{state.step:06d}_{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, model in state.networks():
        save_model(model, tmp / f"{name}.safetensors")
    torch.save(
        {
            "step": state.step,
            "data_cursor": state.data_cursor,
            "student_optim": state.student_optim.state_dict(),
            "critic_optim": None if state.critic_optim is None else state.critic_optim.state_dict(),
            "bank": None if state.bank is None else state.bank.state_dict(),
        },
        tmp / "state.pt",
    )
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    pointer = run_dir / f".latest_{os.getpid()}"
    pointer.write_text(final.name)
    os.replace(pointer, run_dir / "latest")
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
                p.copy_(q)
    saved = torch.load(folder / "state.pt", weights_only=True, map_location="cpu")
    state.step, state.data_cursor = int(saved["step"]), int(saved["data_cursor"])
    state.student_optim.load_state_dict(saved["student_optim"])
    if state.critic_optim is not None:
        state.critic_optim.load_state_dict(saved["critic_optim"])
    if state.bank is not None and saved.get("bank") is not None:
        state.bank.load_state_dict(saved["bank"])
