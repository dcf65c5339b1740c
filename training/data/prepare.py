r"""``prepare-data`` for real data: videos + captions -> cached Wan latents and umT5 states; prompt files -> states.

    python -m training.data.prepare --videos clips/ --captions clips/captions.csv --out data/latents \
        --vae Wan2.1-T2V-1.3B-Diffusers --text-encoder Wan2.1-T2V-1.3B-Diffusers
    python -m training.data.prepare --prompts vidprom_filtered.txt --out data/prompts \
        --text-encoder Wan2.1-T2V-1.3B-Diffusers/text_encoder --prompt-batch 64
    # several GPUs: one process each, same --out, --shard i --num-shards n

Every run resumes: clips and prompt shards already in ``--out`` are skipped. A bad row or video (missing, corrupt,
too short, empty caption) is logged once, counted by reason in the report, and never stops the run. The encoders are
loaded only when something needs encoding.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .cache import CacheSpec, ClipCache, clip_key
from .encoders import UMT5TextEncoder, WanVideoEncoder, component_dir
from .negative import negative_is_current, write_negative
from .prompt_cache import PromptCacheSpec, open_prompt_cache, shard_is_current, shard_path, write_prompt_shard
from .prompts import read_prompts
from .report import PrepareReport, SkipItem, logger
from .videos import VideoConfig, load_clip, read_captions, to_unit_range

DTYPES = ("float32", "bfloat16", "float16")


@dataclass(kw_only=True, slots=True)
class PrepareConfig:
    """Settings of a ``prepare-data`` run."""

    video: VideoConfig = field(default_factory=VideoConfig)
    """How source videos become clips (fps, size, frames)."""
    device: str = "auto"
    """Where the encoders run: "auto" (cuda when available, else cpu), "cpu", "cuda", "cuda:1", ..."""
    vae_dtype: str = "float32"
    """VAE dtype (Wan's VAE is run in float32)."""
    text_dtype: str = "bfloat16"
    """umT5 dtype (bfloat16; float16 overflows in T5)."""
    save_dtype: str = "bfloat16"
    """dtype of the cached tensors."""
    text_len: int = 512
    """Rows the text states are padded to (Wan: 512 tokens; longer prompts are truncated)."""
    prompt_batch: int = 32
    """Prompts per umT5 forward in ``prepare_prompts``."""
    shard_size: int = 1024
    """Prompts per prompt-cache shard file."""
    log_every: int = 50
    """Print progress every this many clips (prompts: every shard)."""
    shard: int = 0
    """This process's shard in [0, num_shards) when several processes share one output folder."""
    num_shards: int = 1
    """Processes sharing the output folder."""
    negative_prompt: str = ""
    """Prompt of the guidance's unconditional branch, encoded into ``negative.safetensors`` beside the data."""

    def __post_init__(self) -> None:
        for name in ("vae_dtype", "text_dtype", "save_dtype"):
            if getattr(self, name) not in DTYPES:
                raise ValueError(f"{name} must be one of {DTYPES}, got {getattr(self, name)!r}")
        if min(self.text_len, self.prompt_batch, self.shard_size, self.log_every) < 1:
            raise ValueError("text_len, prompt_batch, shard_size and log_every must be positive")
        if self.num_shards < 1 or not 0 <= self.shard < self.num_shards:
            raise ValueError(f"shard must be in [0, {self.num_shards}), got {self.shard}")

    def resolved_device(self) -> str:
        """The device encoders run on."""
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device


def _config(path: Path, name: str) -> dict:
    """config.json of a component, read without loading weights."""
    return json.loads((component_dir(path, name) / "config.json").read_text())


class _Encoders:
    """The encoders, loaded on first use (a fully cached run never loads them)."""

    def __init__(self, cfg: PrepareConfig, vae_dir: Path | None, text_encoder_dir: Path,
                 tokenizer_dir: Path | None) -> None:
        self.cfg, self.vae_dir, self.text_dir, self.tok_dir = cfg, vae_dir, text_encoder_dir, tokenizer_dir
        self._video: WanVideoEncoder | None = None
        self._text: UMT5TextEncoder | None = None

    @property
    def video(self) -> WanVideoEncoder:
        if self._video is None:
            if self.vae_dir is None:
                raise ValueError("encoding videos needs a VAE folder")
            self._video = WanVideoEncoder.from_pretrained(self.vae_dir, device=self.cfg.resolved_device(),
                                                          dtype=getattr(torch, self.cfg.vae_dtype))
        return self._video

    @property
    def text(self) -> UMT5TextEncoder:
        if self._text is None:
            self._text = UMT5TextEncoder.from_pretrained(self.text_dir, tokenizer_path=self.tok_dir,
                                                         max_tokens=self.cfg.text_len, device=self.cfg.resolved_device(),
                                                         dtype=getattr(torch, self.cfg.text_dtype))
        return self._text


def _encode_negative(folder: Path, encoders: _Encoders, cfg: PrepareConfig) -> None:
    """Encode ``cfg.negative_prompt`` into ``folder`` (shard 0 alone; skipped when already current)."""
    if cfg.shard == 0 and not negative_is_current(folder, cfg.negative_prompt):
        enc = encoders.text.encode([cfg.negative_prompt])
        write_negative(folder, cfg.negative_prompt, enc.states[0, : int(enc.lengths[0])], getattr(torch, cfg.save_dtype))


def clip_spec(cfg: PrepareConfig, vae_dir: Path, text_encoder_dir: Path) -> CacheSpec:
    """What each clip will hold, from the VAE and text encoder configs (no weights loaded)."""
    vae, text = _config(vae_dir, "vae"), _config(text_encoder_dir, "text_encoder")
    spatial, temporal = int(vae.get("scale_factor_spatial") or 8), int(vae.get("scale_factor_temporal") or 4)
    v = cfg.video
    if (v.num_frames - 1) % temporal or v.height % spatial or v.width % spatial:
        raise ValueError(f"{v.num_frames} frames at {v.height}x{v.width} do not fit the VAE's strides "
                         f"({temporal} in time, {spatial} in space)")
    shape = (int(vae.get("z_dim", 16)), (v.num_frames - 1) // temporal + 1, v.height // spatial, v.width // spatial)
    return CacheSpec(latent_shape=shape, text_dim=int(text["d_model"]), text_len=cfg.text_len,
                     save_dtype=cfg.save_dtype, video={"fps": v.fps, "height": v.height, "width": v.width,
                                                       "num_frames": v.num_frames})


def prepare_videos(videos_dir: str | Path, captions: str | Path, out_dir: str | Path, *, vae_dir: str | Path,
                   text_encoder_dir: str | Path, tokenizer_dir: str | Path | None = None,
                   cfg: PrepareConfig | None = None) -> PrepareReport:
    """Encode every captioned video into the latent cache at ``out_dir`` (see ``training.data.cache``).

    Args:
        videos_dir: Folder the captions table's relative paths start from.
        captions: CSV (``path,caption``) or JSONL (``{"path", "caption"}``) table.
        out_dir: Cache folder; clips already there are skipped (counted as cached).
        vae_dir: ``AutoencoderKLWan`` folder or a diffusers pipeline root.
        text_encoder_dir: ``UMT5EncoderModel`` folder or a pipeline root.
        tokenizer_dir: Tokenizer folder (default: beside the text encoder).
        cfg: Run settings (default ``PrepareConfig()``).

    Returns:
        Counts of this process's shard: encoded, already cached, skipped by reason, seconds.

    """
    cfg = cfg or PrepareConfig()
    start, report = time.perf_counter(), PrepareReport()
    vae_dir, text_dir = Path(vae_dir), Path(text_encoder_dir)
    # rows are read by every shard; only shard 0 counts the bad ones so shard reports add up
    sources = read_captions(Path(captions), Path(videos_dir), report if cfg.shard == 0 else PrepareReport())
    cache = ClipCache(out_dir, clip_spec(cfg, vae_dir, text_dir), shard=cfg.shard, num_shards=cfg.num_shards)
    encoders = _Encoders(cfg, vae_dir, text_dir, None if tokenizer_dir is None else Path(tokenizer_dir))
    _encode_negative(Path(out_dir), encoders, cfg)
    seen: set[str] = set()
    for i, src in enumerate(sources):
        key = clip_key(src.name, src.caption)
        if not cache.owns(key):
            continue
        if key in seen:
            report.skip(src.name, SkipItem("duplicate_row", "same video and caption as an earlier row"))
        elif key in cache:
            report.cached += 1
        else:
            try:
                frames = load_clip(src.path, cfg.video)  # (3, T, H, W) uint8
            except SkipItem as err:
                report.skip(str(src.path), err)
            else:
                latents = encoders.video(to_unit_range(frames)[None])[0]  # (C, F, h, w)
                text = encoders.text.encode([src.caption])
                cache.add(key, latents, text.states[0, : int(text.lengths[0])], caption=src.caption, source=src.name)
                report.encoded += 1
        seen.add(key)
        if (i + 1) % cfg.log_every == 0:
            report.seconds = time.perf_counter() - start
            print(f"prepare-data: {i + 1}/{len(sources)} videos: {report.summary()}", flush=True)
    report.seconds = time.perf_counter() - start
    return report


def prepare_prompts(prompt_file: str | Path, out_dir: str | Path, *, text_encoder_dir: str | Path,
                    tokenizer_dir: str | Path | None = None, cfg: PrepareConfig | None = None) -> PrepareReport:
    """Clean, de-duplicate and encode a prompt file into the prompt cache at ``out_dir`` (see ``prompt_cache``).

    Args:
        prompt_file: Text file with one prompt a line, or CSV / JSONL with a ``prompt`` field.
        out_dir: Prompt cache folder; shards already holding their prompts are skipped (counted as cached).
        text_encoder_dir: ``UMT5EncoderModel`` folder or a pipeline root.
        tokenizer_dir: Tokenizer folder (default: beside the text encoder).
        cfg: Run settings (default ``PrepareConfig()``).

    Returns:
        Counts in prompts: encoded, already cached, skipped ``blank`` / ``duplicate``, seconds.

    """
    cfg = cfg or PrepareConfig()
    start, report = time.perf_counter(), PrepareReport()
    text_dir = Path(text_encoder_dir)
    found = read_prompts(prompt_file)
    report.skipped = {k: v for k, v in (("blank", found.blank), ("duplicate", found.duplicate)) if v}
    logger.info("%s: %d prompts, %d blank and %d duplicate dropped", prompt_file, len(found.prompts), found.blank,
                found.duplicate)
    spec = PromptCacheSpec(text_dim=int(_config(text_dir, "text_encoder")["d_model"]), text_len=cfg.text_len,
                           save_dtype=cfg.save_dtype, shard_size=cfg.shard_size)
    folder = open_prompt_cache(out_dir, spec, found.prompts)
    encoders = _Encoders(cfg, None, text_dir, None if tokenizer_dir is None else Path(tokenizer_dir))
    _encode_negative(folder, encoders, cfg)
    num = -(-len(found.prompts) // cfg.shard_size)
    for k in range(cfg.shard, num, cfg.num_shards):
        prompts = found.prompts[k * cfg.shard_size : (k + 1) * cfg.shard_size]
        path = shard_path(folder, k)
        if shard_is_current(path, prompts):
            report.cached += len(prompts)
            continue
        states = []
        for b in range(0, len(prompts), cfg.prompt_batch):
            enc = encoders.text.encode(prompts[b : b + cfg.prompt_batch])  # states (B, text_len, D)
            states += [s[: int(n)] for s, n in zip(enc.states, enc.lengths)]
        write_prompt_shard(path, prompts, states, getattr(torch, cfg.save_dtype))
        report.encoded += len(prompts)
        report.seconds = time.perf_counter() - start
        print(f"prepare-data: shard {k + 1}/{num}: {report.summary()}", flush=True)
    if cfg.shard == 0:  # shards past the end belong to an earlier, longer prompt list
        for stale in sorted(shard_path(folder, 0).parent.glob("shard_*.safetensors")):
            if int(stale.stem.split("_")[1]) >= num:
                stale.unlink()
    report.seconds = time.perf_counter() - start
    return report


def add_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``prepare-data`` options (all but ``--out``, which the caller's parser provides as a Path)."""
    d, v = PrepareConfig(), VideoConfig()
    g = parser.add_argument_group("prepare-data (real data)")
    g.add_argument("--videos", type=Path, help="folder of videos (with --captions)")
    g.add_argument("--captions", type=Path, help="CSV path,caption or JSONL {path, caption} (video/text accepted)")
    g.add_argument("--prompts", type=Path, help="prompt-only file: one prompt a line, or CSV/JSONL with 'prompt'")
    g.add_argument("--vae", type=Path, help="AutoencoderKLWan folder or diffusers pipeline root")
    g.add_argument("--text-encoder", type=Path, help="UMT5EncoderModel folder or diffusers pipeline root")
    g.add_argument("--tokenizer", type=Path, default=None, help="tokenizer folder (default: beside the text encoder)")
    g.add_argument("--fps", type=float, default=v.fps, help=f"target frame rate (default {v.fps:g})")
    g.add_argument("--height", type=int, default=v.height, help=f"target height (default {v.height})")
    g.add_argument("--width", type=int, default=v.width, help=f"target width (default {v.width})")
    g.add_argument("--num-frames", type=int, default=v.num_frames, help=f"frames per clip, 4k+1 (default {v.num_frames})")
    g.add_argument("--min-source-fps", type=float, default=v.min_source_fps, help="skip slower sources")
    g.add_argument("--device", default=d.device, help="encoder device (default: cuda if available)")
    g.add_argument("--vae-dtype", choices=DTYPES, default=d.vae_dtype)
    g.add_argument("--text-dtype", choices=DTYPES, default=d.text_dtype)
    g.add_argument("--save-dtype", choices=DTYPES, default=d.save_dtype)
    g.add_argument("--text-len", type=int, default=d.text_len, help=f"text rows (default {d.text_len})")
    g.add_argument("--prompt-batch", type=int, default=d.prompt_batch)
    g.add_argument("--shard-size", type=int, default=d.shard_size, help="prompts per prompt-cache file")
    g.add_argument("--log-every", type=int, default=d.log_every, help="progress line every N clips")
    g.add_argument("--shard", type=int, default=d.shard, help="this process's shard (several processes, one --out)")
    g.add_argument("--num-shards", type=int, default=d.num_shards)
    g.add_argument("--negative-prompt", default=d.negative_prompt,
                   help="unconditional prompt of guidance, encoded beside the data (default: empty)")


def run_prepare(args: argparse.Namespace) -> int:
    """Run the real-data preparation the parsed arguments ask for; prints one summary line per part.

    Raises:
        ValueError: Missing or contradictory arguments, or settings that do not fit the models.

    """
    if args.out is None or args.text_encoder is None or (args.videos is None and args.prompts is None):
        raise ValueError("prepare-data needs --out, --text-encoder, and --videos/--captions/--vae or --prompts")
    if (args.videos is None) != (args.captions is None) or (args.videos is not None and args.vae is None):
        raise ValueError("--videos needs --captions and --vae (and --captions needs --videos)")
    video = VideoConfig(fps=args.fps, height=args.height, width=args.width, num_frames=args.num_frames,
                        min_source_fps=args.min_source_fps)
    cfg = PrepareConfig(video=video, device=args.device, vae_dtype=args.vae_dtype, text_dtype=args.text_dtype,
                        save_dtype=args.save_dtype, text_len=args.text_len, prompt_batch=args.prompt_batch,
                        shard_size=args.shard_size, log_every=args.log_every, shard=args.shard,
                        num_shards=args.num_shards, negative_prompt=args.negative_prompt)
    if args.videos is not None:
        report = prepare_videos(args.videos, args.captions, args.out, vae_dir=args.vae, text_encoder_dir=args.text_encoder,
                                tokenizer_dir=args.tokenizer, cfg=cfg)
        print(f"videos -> {args.out}: {report.summary()}")
    if args.prompts is not None:
        report = prepare_prompts(args.prompts, args.out, text_encoder_dir=args.text_encoder,
                                 tokenizer_dir=args.tokenizer, cfg=cfg)
        print(f"prompts -> {args.out}: {report.summary()}")
    return 0


def main(argv: list[str] | None = None, prog: str = "python -m training.data.prepare") -> int:
    """Entry point: ``python -m training.data.prepare``, or a CLI stage that hands over its remaining arguments."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="output cache folder")
    add_prepare_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run_prepare(args)
    except (ValueError, FileNotFoundError, ImportError) as err:
        parser.error(str(err))
    return 2


if __name__ == "__main__":
    sys.exit(main())
