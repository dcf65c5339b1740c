"""Load Wan2.1 T2V weights from any supported file layout into a :class:`WanModel`; save our own checkpoints.

Sources: ``.safetensors`` (ours with config metadata, official, ComfyUI), ``.pt``/``.pth``/``.ckpt``/``.bin``
(training dicts of Self-Forcing / LongLive / Context Forcing, raw state dicts; read with ``weights_only=True`` only),
diffusers folders (single or sharded), and in-memory state dicts. Key mapping lives in :mod:`.keys`.
"""

from __future__ import annotations

import functools
import json
import os
import pickle
import re
import struct
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any, NamedTuple

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor

from ..atomic import write_atomic
from .config import WanConfig
from .family import Recognition, recognise
from .keys import infer_config, official_key_map, select_state_dict, to_official_keys
from .lora import LoraSource, apply_loras
from .wan import WanModel

CONFIG_METADATA_KEY = "context_forcing.config"
"""Safetensors metadata key holding ``WanConfig.to_json()`` in checkpoints written by :func:`save_model`."""
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
_SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "I64": torch.int64, "I32": torch.int32,
    "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool,
}
# config.json fields (diffusers WanTransformer3DModel, official Wan2.1 WanModel) -> WanConfig fields
_CONFIG_JSON_FIELDS = {"num_attention_heads": "num_heads", "in_dim": "in_channels", "out_dim": "out_channels", **{
    f: f for f in ("dim", "num_heads", "in_channels", "out_channels", "text_dim", "text_len", "freq_dim", "ffn_dim",
                   "num_layers", "patch_size", "eps")}}

Source = str | os.PathLike[str] | Mapping[str, Any]

MAX_HEADER_BYTES = 16 * 1024**2
"""Largest safetensors header read (Wan2.1 14B: ~0.1 MB); a larger one is refused before it is parsed."""
MAX_TENSORS = 10_000
"""Most tensors a checkpoint may hold (Wan2.1 14B: ~1,100)."""
MAX_BLOCKS = 128
"""Most transformer blocks (Wan2.1 14B: 40)."""
MAX_DIMS = 6
"""Most dimensions of one tensor (the patch embedding has 5)."""
MAX_DIM_SIZE = 2**20
"""Largest size of one dimension (Wan2.1 14B: 13,824 at most)."""
_BLOCK_INDEX = re.compile(r"(?:^|\.)blocks\.(\d+)\.")


class _Opened(NamedTuple):
    """A checkpoint opened but not yet read into the model.

    ``name`` (file, folder or "state dict") is for errors; ``obj`` is what the file holds (for safetensors a dict of
    meta tensors carrying shapes and dtypes); ``fetch`` reads one tensor by its key in the file (None: ``obj`` holds
    real tensors); ``hint`` holds WanConfig fields from metadata or a diffusers ``config.json``.
    """

    name: str
    obj: Any
    fetch: Callable[[str], Tensor] | None
    hint: dict[str, Any] | None
    metadata: dict[str, str] | None = None
    """Safetensors header metadata (all shards), for :func:`.family.recognise`."""


def load_model(
    source: Source,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    config: WanConfig | None = None,
    use_ema: bool | None = None,
    share: bool = False,
    lora: Sequence[tuple[LoraSource, float]] = (),
) -> WanModel:
    """Load Wan2.1 T2V weights into a new :class:`WanModel` in eval mode.

    Keys, shapes and the architecture are validated before any weight is read, so a bad file fails before
    anything is allocated. The model is built on the meta device and the weights are assigned, not copied.

    Args:
        source: a ``.safetensors`` / ``.pt`` / ``.pth`` / ``.ckpt`` / ``.bin`` file, a folder (diffusers
            ``diffusion_pytorch_model.safetensors[.index.json]``, a diffusers pipeline folder with ``transformer/``,
            or a folder holding exactly one weights file), or an in-memory (training) state dict.
        dtype: parameter dtype; None keeps the floating dtype stored in the file (fp8 files load as bfloat16).
        device: parameter device; None is CPU.
        config: architecture; None infers it from the shapes plus stored metadata (see :func:`.keys.infer_config`).
        use_ema: for training dicts, True takes ``generator_ema``, False ``generator``, None the EMA when present.
        share: for an in-memory state dict, use the caller's tensors themselves where dtype and device already
            match (e.g. the weights of a model ComfyUI has loaded), so they are not held twice. Ignored with
            ``lora`` (merging must not change the caller's tensors).
        lora: LoRAs merged into the weights in order, as (file or state dict, strength); see :mod:`.lora`.

    Returns:
        The model in eval mode.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ValueError: unreadable file, unsupported layout, or missing / unexpected / mis-shaped keys; the message
            names the file and the first offending key.

    """
    return load_recognised(source, dtype=dtype, device=device, config=config, use_ema=use_ema, share=share,
                           lora=lora)[0]


def load_recognised(
    source: Source,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
    config: WanConfig | None = None,
    use_ema: bool | None = None,
    share: bool = False,
    lora: Sequence[tuple[LoraSource, float]] = (),
) -> tuple[WanModel, Recognition]:
    """:func:`load_model`, also telling which public family the checkpoint is (:func:`.family.recognise`)."""
    if dtype is not None and not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    device = torch.device("cpu" if device is None else device)
    with ExitStack() as stack:
        opened = _open(source, stack)
        raw, names, sd, model = _validated(opened, config, use_ema)
        family = recognise(opened.name, opened.obj, opened.metadata)
        target = dtype or _stored_dtype(sd.values())
        fetch = opened.fetch or raw.__getitem__
        # File-backed (mmap) or caller-owned tensors are copied; safetensors reads are fresh and only cast if needed.
        copy = opened.fetch is None and not (share and not lora)
        weights = {names[key]: fetch(key).to(device=device, dtype=target, copy=copy).contiguous() for key in raw}
    model.load_state_dict(weights, strict=True, assign=True)
    apply_loras(model, lora)
    return model.eval(), family


def inspect_checkpoint(source: Source, *, config: WanConfig | None = None, use_ema: bool | None = None) -> WanConfig:
    """Validate a checkpoint as :func:`load_model` does, without reading its weights (safetensors: header only).

    Safetensors files are checked against the caps (:data:`MAX_HEADER_BYTES`, :data:`MAX_TENSORS`,
    :data:`MAX_BLOCKS`, :data:`MAX_DIMS`, :data:`MAX_DIM_SIZE`) before anything else, so any file is answered in
    milliseconds. Pickled checkpoints are memory-mapped and unpickled (``weights_only``), which takes longer for
    large files: run this off a server's event loop.

    Returns:
        The architecture it holds.

    Raises:
        FileNotFoundError, ValueError: as :func:`load_model`, naming the file and the first offending key.

    """
    with ExitStack() as stack:
        return _validated(_open(source, stack), config, use_ema)[3].config


def inspect_checkpoint_cached(path: str | os.PathLike[str]) -> WanConfig:
    """:func:`inspect_checkpoint` of a file or folder, remembered per (path, modification time, size).

    A failed inspection is remembered too (the same ValueError is raised again), so a server that is asked about a
    bad file many times reads it once.
    """
    stat = os.stat(path)  # FileNotFoundError for a missing path, not cached
    result = _inspect_by_stat(os.fspath(path), stat.st_mtime_ns, stat.st_size)
    if isinstance(result, str):
        raise ValueError(result)
    return result


@functools.lru_cache(maxsize=256)
def _inspect_by_stat(path: str, mtime_ns: int, size: int) -> WanConfig | str:
    try:
        return inspect_checkpoint(path)
    except (OSError, ValueError) as err:
        return str(err)


def _check_caps(sd: Mapping[str, Any]) -> None:
    """Refuse state dicts larger than any Wan2.1 model before keys are mapped or a model is built."""
    if len(sd) > MAX_TENSORS:
        raise ValueError(f"holds {len(sd)} tensors; a Wan2.1 checkpoint has at most {MAX_TENSORS}")
    blocks = {m.group(1) for key in sd if isinstance(key, str) and (m := _BLOCK_INDEX.search(key))}
    if len(blocks) > MAX_BLOCKS:
        raise ValueError(f"holds {len(blocks)} transformer blocks; at most {MAX_BLOCKS} are supported")
    for key, value in sd.items():
        shape = tuple(getattr(value, "shape", ()))
        if len(shape) > MAX_DIMS or any(d > MAX_DIM_SIZE for d in shape):
            raise ValueError(f"tensor {key!r} has shape {shape}; at most {MAX_DIMS} dimensions of at most "
                             f"{MAX_DIM_SIZE} each are supported")


def read_safetensors_header(file: Path) -> tuple[dict[str, tuple[str, tuple[int, ...]]], dict[str, str]]:
    """Parse a safetensors header within the caps: {key: (dtype, shape)} and the string metadata.

    Raises:
        ValueError: header larger than :data:`MAX_HEADER_BYTES`, malformed, more than :data:`MAX_TENSORS` tensors,
            an unknown dtype, a bad shape, or data offsets outside the file.

    """
    size = file.stat().st_size
    with open(file, "rb") as fh:
        prefix = fh.read(8)
        if len(prefix) < 8:
            raise ValueError("shorter than a safetensors header")
        (length,) = struct.unpack("<Q", prefix)
        if length > MAX_HEADER_BYTES or length > size - 8:
            raise ValueError(f"header of {length} bytes (file {size} bytes, at most {MAX_HEADER_BYTES} read)")
        raw = fh.read(length)
    # Every tensor entry has one "data_offsets" key: counting them costs ~1 ms where parsing a crafted 12 MB header
    # takes ~0.5 s, so a file with far too many tensors is refused before it is parsed.
    if (declared := raw.count(b'"data_offsets"')) > MAX_TENSORS:
        raise ValueError(f"holds {declared} tensors; a Wan2.1 checkpoint has at most {MAX_TENSORS}")
    try:
        header = json.loads(raw)
    except ValueError as err:
        raise ValueError(f"header is not JSON: {err}") from None
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError("__metadata__ must map strings to strings")
    if len(header) > MAX_TENSORS:
        raise ValueError(f"holds {len(header)} tensors; a Wan2.1 checkpoint has at most {MAX_TENSORS}")
    data = size - 8 - length
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    for key, info in header.items():
        if not isinstance(info, dict) or info.get("dtype") not in _SAFETENSORS_DTYPES:
            raise ValueError(f"tensor {key!r}: unknown dtype in {str(info)[:80]}")
        shape, offsets = info.get("shape"), info.get("data_offsets")
        if (not isinstance(shape, list) or len(shape) > MAX_DIMS
                or not all(isinstance(d, int) and 0 <= d <= MAX_DIM_SIZE for d in shape)):
            raise ValueError(f"tensor {key!r}: shape {str(shape)[:80]} (at most {MAX_DIMS} dimensions of at most "
                             f"{MAX_DIM_SIZE} each)")
        if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(o, int) for o in offsets)
                or not 0 <= offsets[0] <= offsets[1] <= data):
            raise ValueError(f"tensor {key!r}: data offsets {str(offsets)[:80]} outside the file's {data} data bytes")
        tensors[key] = (info["dtype"], tuple(shape))
    return tensors, metadata


def _validated(opened: _Opened, config: WanConfig | None, use_ema: bool | None
               ) -> tuple[Mapping[str, Any], dict[str, str], dict[str, Any], WanModel]:
    """Select the weights, map them to official keys, infer the config, check keys and shapes on a meta model."""
    try:
        raw = select_state_dict(opened.obj, use_ema=use_ema)
        _check_caps(raw)
        names = official_key_map(raw)
        sd = {names[key]: value for key, value in raw.items()}
        cfg = config if config is not None else infer_config(sd, hint=opened.hint)
    except ValueError as err:
        raise ValueError(f"{opened.name}: {err}") from err
    with torch.device("meta"):
        model = WanModel(cfg)
    _check_keys(opened.name, model, sd)
    return raw, names, sd, model


def save_model(model: WanModel, path: str | os.PathLike[str], *, metadata: Mapping[str, str] | None = None,
               state_dict: Mapping[str, Tensor] | None = None) -> None:
    """Save official-key weights and the config to a safetensors file, atomically.

    The file loads with :func:`load_model` (config from metadata) and with ComfyUI's ``UNETLoader``.

    Args:
        model: the model; a ``torch.compile`` wrapper is unwrapped by key.
        path: destination ending in ``.safetensors``; parent folders are created.
        metadata: extra string metadata; ``context_forcing.config`` is reserved.
        state_dict: weights to write instead of ``model.state_dict()`` (e.g. gathered from FSDP shards).

    Raises:
        ValueError: bad suffix or metadata.

    """
    path = Path(os.fspath(path))
    if path.suffix != ".safetensors":
        raise ValueError(f"save_model writes .safetensors files, got {path}")
    extra = dict(metadata or {})
    if CONFIG_METADATA_KEY in extra:
        raise ValueError(f"metadata key {CONFIG_METADATA_KEY!r} is reserved for the model config")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items()):
        raise ValueError("safetensors metadata keys and values must be strings")
    header = {"format": "pt", **extra, CONFIG_METADATA_KEY: model.config.to_json()}
    weights = to_official_keys(state_dict or model.state_dict())
    tensors = {key: value.detach().cpu().contiguous() for key, value in weights.items()}
    write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata=header))


def _check_keys(name: str, model: WanModel, sd: Mapping[str, Tensor]) -> None:
    """Raise one ValueError naming the first missing, unexpected and mis-shaped key, with counts of the rest."""
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    found = {key: tuple(value.shape) for key, value in sd.items()}
    groups = (("missing", [k for k in expected if k not in found]),
              ("unexpected", [k for k in found if k not in expected]),
              ("mis-shaped", [k for k in expected if k in found and found[k] != expected[k]]))
    problems = []
    for kind, keys in groups:
        if keys:
            detail = f": expected {expected[keys[0]]}, found {found[keys[0]]}" if kind == "mis-shaped" else ""
            more = f" (and {len(keys) - 1} other {kind} keys)" if len(keys) > 1 else ""
            problems.append(f"{kind} key {keys[0]!r}{detail}{more}")
    if problems:
        lora = any("lora" in k for k in found if k not in expected)
        cfg = model.config
        raise ValueError(f"{name}: does not fit WanModel(dim={cfg.dim}, num_layers={cfg.num_layers}): "
                         + "; ".join(problems) + ("; this looks like a LoRA file, not full weights" if lora else ""))


def _stored_dtype(tensors: Iterable[Tensor]) -> torch.dtype:
    """Return the floating dtype holding most elements; fp8 maps to bfloat16 as the model cannot compute in it."""
    counts: Counter[torch.dtype] = Counter()
    for t in tensors:
        counts[t.dtype] += t.numel() if t.dtype.is_floating_point else 0
    dtype = max(counts, key=counts.__getitem__) if counts and max(counts.values()) else torch.float32
    return torch.bfloat16 if dtype.itemsize == 1 else dtype


def _open(source: Source, stack: ExitStack) -> _Opened:
    if isinstance(source, Mapping):
        return _Opened("state dict", source, None, None)
    path = Path(os.fspath(source))
    if not path.exists():
        raise FileNotFoundError(f"no such checkpoint file or folder: {path}")
    files, hint = _resolve_folder(path) if path.is_dir() else ([path], None)
    if files[0].suffix == ".safetensors":
        return _open_safetensors(files, hint, stack)
    if files[0].suffix in PICKLE_SUFFIXES:
        return _Opened(str(files[0]), _torch_load(files[0]), None, hint)
    raise ValueError(f"{files[0]}: unsupported checkpoint type; expected .safetensors or one of {PICKLE_SUFFIXES}")


def _json_object(source: Path | str, where: str) -> dict[str, Any]:
    """Parse a JSON object from a file or a string; ``where`` names it in errors."""
    try:
        data = json.loads(source.read_text() if isinstance(source, Path) else source)
    except (OSError, ValueError) as err:
        raise ValueError(f"{where}: not readable JSON: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(data).__name__}")
    return data


def _resolve_folder(folder: Path) -> tuple[list[Path], dict[str, Any] | None]:
    """Weight files of a folder and the config hint of its ``config.json`` (diffusers or official Wan2.1)."""
    if (folder / "model_index.json").is_file() and (folder / "transformer").is_dir():
        folder = folder / "transformer"  # a whole diffusers pipeline
    hint = None
    if (folder / "config.json").is_file():
        data = _json_object(folder / "config.json", str(folder / "config.json"))
        hint = {field: data[key] for key, field in _CONFIG_JSON_FIELDS.items() if data.get(key) is not None}
    index = folder / "diffusion_pytorch_model.safetensors.index.json"
    indexes = [index] if index.is_file() else sorted(folder.glob("*.safetensors.index.json"))
    if len(indexes) == 1:
        weight_map = _json_object(indexes[0], str(indexes[0])).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ValueError(f"{indexes[0]}: no 'weight_map' in the index")
        shards = [folder / name for name in dict.fromkeys(weight_map.values())]
        if absent := [shard for shard in shards if not shard.is_file()]:
            raise FileNotFoundError(f"{indexes[0]} lists shard {absent[0]}, which does not exist")
        return shards, hint
    if (folder / "diffusion_pytorch_model.safetensors").is_file():
        return [folder / "diffusion_pytorch_model.safetensors"], hint
    found = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in (".safetensors", *PICKLE_SUFFIXES))
    if len(found) != 1:
        raise ValueError(f"{folder}: expected diffusion_pytorch_model.safetensors[.index.json] or exactly one "
                         f".safetensors / .pt file, found {[p.name for p in found]}")
    return found, hint


def _open_safetensors(files: list[Path], hint: dict[str, Any] | None, stack: ExitStack) -> _Opened:
    """Read the headers only (within the caps): meta tensors carry shapes and dtypes, ``fetch`` reads one tensor at a
    time (the file is opened with ``safe_open`` on the first read).
    """
    tensors: dict[str, Tensor] = {}
    owner: dict[str, Path] = {}
    all_metadata: dict[str, str] = {}
    for file in files:
        try:
            header, metadata = read_safetensors_header(file)
        except (OSError, ValueError) as err:
            raise ValueError(f"{file}: not a readable safetensors file (truncated, corrupt or too large?): {err}"
                             ) from err
        for key, (dtype, shape) in header.items():
            if key in tensors:
                raise ValueError(f"{file}: key {key!r} appears in two shards")
            tensors[key] = torch.empty(shape, dtype=_SAFETENSORS_DTYPES[dtype], device="meta")
            owner[key] = file
        if len(tensors) > MAX_TENSORS:
            raise ValueError(f"{file}: the shards hold {len(tensors)} tensors; at most {MAX_TENSORS}")
        all_metadata.update(metadata)
        if CONFIG_METADATA_KEY in metadata:
            config = _json_object(metadata[CONFIG_METADATA_KEY], f"{file} metadata {CONFIG_METADATA_KEY!r}")
            hint = config if hint is None else {**hint, **config}
    name = str(files[0]) if len(files) == 1 else f"{files[0].parent} ({len(files)} shards)"
    handles: dict[Path, Any] = {}

    def fetch(key: str) -> Tensor:
        try:
            file = owner[key]
            if file not in handles:
                handles[file] = stack.enter_context(safe_open(str(file), framework="pt", device="cpu"))
            return handles[file].get_tensor(key)
        except Exception as err:  # SafetensorError derives from Exception only
            raise ValueError(f"{name}: cannot read tensor {key!r}: {err}") from err

    return _Opened(name, tensors, fetch, hint, all_metadata)


def _torch_load(path: Path) -> Any:
    """``torch.load`` with ``weights_only=True`` (never anything else), memory-mapped when the format allows.

    A zip checkpoint is first checked against the caps: at most :data:`MAX_TENSORS` + 16 members and a pickle of at
    most :data:`MAX_HEADER_BYTES` (Wan2.1 14B: ~1,100 members, a ~0.1 MB pickle), so a crafted file is refused
    before it is unpickled.
    """
    is_zip = zipfile.is_zipfile(path)
    if is_zip:
        try:
            with zipfile.ZipFile(path) as archive:
                members = archive.infolist()
        except (OSError, zipfile.BadZipFile) as err:
            raise ValueError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {err}") from err
        pickles = [m for m in members if m.filename.endswith(".pkl")]
        if len(members) > MAX_TENSORS + 16 or any(m.file_size > MAX_HEADER_BYTES for m in pickles):
            raise ValueError(f"{path}: {len(members)} archive members, pickle of "
                             f"{max((m.file_size for m in pickles), default=0)} bytes; at most {MAX_TENSORS + 16} "
                             f"members and {MAX_HEADER_BYTES} bytes of pickle are read")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=is_zip)
    except pickle.UnpicklingError as err:
        lines = [line for line in str(err).splitlines() if "global" in line.lower()] or str(err).splitlines()[:1]
        raise ValueError(f"{path}: refused by torch.load(weights_only=True), which only unpickles tensors and plain "
                         f"containers; convert the file to safetensors. {' '.join(lines).strip()}") from err
    except Exception as err:
        raise ValueError(f"{path}: not a readable PyTorch checkpoint (truncated or corrupt?): {err}") from err
