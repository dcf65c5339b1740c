"""Which public causal Wan2.1-1.3B student a checkpoint is, and what it was trained with.

What the files say (the authors' loading and saving code, read at: guandeh17/Self-Forcing 33593df, NVlabs/LongLive
11ed11d (1.0), thu-ml/Causal-Forcing 1fc7bbc, TencentARC/RollingForcing a1477d0): every family ships the same
825-tensor Wan2.1-1.3B DiT under ``model.`` keys in a plain ``torch.save`` dict, and none stores its chunk size, step
list, attention window or sink: those live in the authors' YAML configs. Weights alone therefore cannot tell
Self-Forcing from Causal Forcing chunk-wise or a LongLive base, nor the 1-, 2- and 4-step frame-wise Causal Forcing
releases from each other. What does tell them apart, in the order used here:

1. this pack's exports (``python -m training.run export``): safetensors metadata ``context_forcing.run_config`` /
   ``context_forcing.checkpoint`` (not ``context_forcing.config``, which :func:`.loading.save_model` writes into any
   file it saves, a converted release included);
2. the release's file name and folder, as published (``self_forcing_dmd.pt``, ``longlive_base.pt``,
   ``framewise/causal_forcing.pt``, ``causal-forcing++/framewise-2step.pt``, ``rolling_forcing_dmd.pt``);
3. export accidents of the top-level keys, reported as a hint only (they change nothing): an EMA-only file whose keys
   keep FSDP's ``_fsdp_wrapped_module.`` (Causal Forcing's frame-wise exports; Rolling Forcing's raw trainer dict
   also holds ``critic``).

A recognised family carries the settings its authors sample with; the sampler takes the chunk size and, when no
Memory Config is connected, the memory from it. Anything else is reported as unknown with this pack's defaults.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..diffusion.schedule import DEFAULT_SHIFT, DEFAULT_STEPS
from ..memory.config import PRESETS

RUN_CONFIG_METADATA_KEY = "context_forcing.run_config"
"""Safetensors metadata of this pack's exports: the training run's configuration (JSON)."""
CHECKPOINT_METADATA_KEY = "context_forcing.checkpoint"
"""Safetensors metadata of this pack's exports: the run's checkpoint it came from."""


@dataclass(frozen=True, slots=True)
class Family:
    """A family of causal students and the settings it was trained and is sampled with."""

    name: str
    memory: str
    """The memory preset that matches its training-time attention (``memory.config.PRESETS``)."""
    chunk_frames: int = 3
    """Latent frames per block (frame-wise students: 1)."""
    steps: int = len(DEFAULT_STEPS)
    """Denoising steps per chunk (evenly spaced from 1000, warped by ``shift``)."""
    shift: float = DEFAULT_SHIFT
    note: str = ""
    """What this pack does differently from the authors' sampler, if anything."""


@dataclass(frozen=True, slots=True)
class Recognition:
    """A family and why: ``known`` is False for the fallback, whose settings are only this pack's defaults."""

    family: Family
    evidence: str
    known: bool
    hint: str = ""
    """A guess from export accidents when nothing else spoke; informs, changes no setting."""

    def summary(self) -> str:
        """One paragraph for the loader node: family, evidence, trained settings, notes."""
        f = self.family
        head = f"{f.name} ({self.evidence})" if self.known else f"family not recognised ({self.evidence})"
        text = (f"{head}. Trained with {f.chunk_frames}-frame chunks, {f.steps} steps (shift {f.shift:g}); "
                f"memory preset '{f.memory}'.")
        return " ".join(part for part in (text, f.note, self.hint) if part)


CONTEXT_FORCING = Family("Context Forcing (this pack's export)", "context_forcing")
SELF_FORCING = Family("Self-Forcing", "self_forcing")
LONGLIVE = Family("LongLive 1.0", "longlive",
                  note="Its released student is this base plus lora.pt: pick the LoRA in lora_name.")
CAUSAL_FORCING_CHUNKWISE = Family("Causal Forcing (chunk-wise)", "self_forcing")
CAUSAL_FORCING_FRAMEWISE = Family("Causal Forcing (frame-wise)", "self_forcing", chunk_frames=1)
CAUSAL_FORCING_PP_2STEP = Family(
    "Causal Forcing++ (frame-wise, 2 steps)", "self_forcing", chunk_frames=1, steps=2,
    note="The authors run the first chunk with 4 steps; this sampler uses the step count for every chunk.")
CAUSAL_FORCING_PP_1STEP = Family(
    "Causal Forcing++ (frame-wise, 1 step)", "self_forcing", chunk_frames=1, steps=1,
    note=CAUSAL_FORCING_PP_2STEP.note)
CAUSAL_FORCING_LONG = Family(
    "Causal Forcing long video (Rolling Forcing based)", "longlive",
    note="The authors sample it with Rolling Forcing's staggered window; here it runs chunk by chunk.")
ROLLING_FORCING = Family(
    "Rolling Forcing", "longlive", steps=5,
    note="The authors denoise a rolling window of 5 chunks at staggered noise levels; this sampler runs it chunk by "
         "chunk with a 3-frame sink (its anchor) and recent frames.")
UNKNOWN = Family("unknown", "context_forcing")
NOT_RECOGNISED = Recognition(UNKNOWN, "weights handed over in memory", False)
"""The recognition of a student built from weights without a file (a ComfyUI MODEL, a training state dict)."""

# (pattern over the file's last path components, lower case, "/" separated; family), first match wins
_NAME_RULES: tuple[tuple[re.Pattern[str], Family], ...] = tuple((re.compile(p), f) for p, f in (
    (r"longlive", LONGLIVE),
    (r"rolling[-_]?forcing", ROLLING_FORCING),
    (r"causal[-_]?forcing\+\+.*1[-_]?step|framewise[-_]1[-_]?step", CAUSAL_FORCING_PP_1STEP),
    (r"causal[-_]?forcing\+\+.*2[-_]?step|framewise[-_]2[-_]?step", CAUSAL_FORCING_PP_2STEP),
    (r"longvideo", CAUSAL_FORCING_LONG),
    (r"frame[-_]?wise.*causal[-_]?forcing|causal[-_]?forcing.*frame[-_]?wise", CAUSAL_FORCING_FRAMEWISE),
    (r"causal[-_]?forcing", CAUSAL_FORCING_CHUNKWISE),
    (r"self[-_]?forcing", SELF_FORCING),
))
_FSDP = "_fsdp_wrapped_module."


def recognise(name: str, obj: Any, metadata: Mapping[str, str] | None = None) -> Recognition:
    """The family of a checkpoint from its path ``name``, loaded object ``obj`` and safetensors ``metadata``.

    Args:
        name: the file's path (its last three components are read, so release folders such as ``framewise/``
            count), or "state dict".
        obj: what the file holds (a training dict with ``generator`` / ``generator_ema``, or a state dict); only
            its keys are read.
        metadata: safetensors header metadata, if any.

    """
    metadata = metadata or {}
    if RUN_CONFIG_METADATA_KEY in metadata or CHECKPOINT_METADATA_KEY in metadata:
        memory = _run_memory(metadata.get(RUN_CONFIG_METADATA_KEY))
        family = CONTEXT_FORCING if memory == CONTEXT_FORCING.memory else Family(CONTEXT_FORCING.name, memory)
        return Recognition(family, "metadata of its export", True)
    parts = re.split(r"[\\/]", name)
    tail = "/".join(parts[-3:]).lower()
    for pattern, family in _NAME_RULES:
        if pattern.search(tail):  # the release's folder counts (framewise/causal_forcing.pt); only the name is shown
            return Recognition(family, f"file name {parts[-1]!r} or its folder", True)
    return Recognition(UNKNOWN, "neither metadata nor a release file name; this pack's defaults", False,
                       hint=_layout_hint(obj))


def _run_memory(text: str | None) -> str:
    try:
        memory = json.loads(text).get("memory") if text else None
    except (ValueError, AttributeError):
        memory = None
    return memory if isinstance(memory, str) and memory in PRESETS else CONTEXT_FORCING.memory


def _layout_hint(obj: Any) -> str:
    if not isinstance(obj, Mapping):
        return ""
    keys = set(obj)
    ema = obj.get("generator_ema")
    fsdp = isinstance(ema, Mapping) and any(isinstance(k, str) and _FSDP in k for k in list(ema)[:50])
    if fsdp and {"generator", "critic"} <= keys:
        return ("Its layout (generator, critic and an FSDP-prefixed EMA) is that of a raw trainer checkpoint, as "
                "Rolling Forcing ships; if it is one, sample it with the longlive memory and 5 steps.")
    if fsdp and "generator" not in keys:
        return ("Its layout (an EMA-only, FSDP-prefixed generator) is that of Causal Forcing's frame-wise exports; "
                "if it is one, its chunks are single latent frames: rename the file after its release "
                "(e.g. framewise_causal_forcing.pt) so the sampler runs it frame by frame.")
    return ""
