"""Export a run's student as one safetensors file for inference (``load_model``, the ComfyUI loader)."""

from __future__ import annotations

from pathlib import Path

import torch

from context_forcing_core.models.family import CHECKPOINT_METADATA_KEY, RUN_CONFIG_METADATA_KEY
from context_forcing_core.models.loading import load_model, save_model

from .state import latest_checkpoint


def export_student(run_dir: Path, out: Path, *, use_ema: bool = True, dtype: torch.dtype | None = None,
                   step: int | None = None) -> Path:
    """Write the latest checkpoint's (or ``step``'s) student (its EMA by default, in ``dtype`` if given) to ``out``
    with provenance metadata.

    The file holds official Wan keys plus ``context_forcing.config`` (architecture), ``context_forcing.run_config``
    (the resolved training config, when the run folder has one) and ``context_forcing.checkpoint`` (which step).
    """
    folder = latest_checkpoint(run_dir) if step is None else run_dir / f"step_{step:06d}"
    if folder is None:
        raise ValueError(f"{run_dir} has no checkpoint to export (no 'latest' file)")
    if not folder.is_dir():
        raise ValueError(f"{run_dir} has no checkpoint of step {step} ({folder.name})")
    source = folder / ("student_ema.safetensors" if use_ema else "student.safetensors")
    metadata = {CHECKPOINT_METADATA_KEY: f"{folder.name}/{source.name}"}
    config = run_dir / "config.json"
    if config.exists():
        metadata[RUN_CONFIG_METADATA_KEY] = config.read_text()
    save_model(load_model(source, dtype=dtype), out, metadata=metadata)
    return out
