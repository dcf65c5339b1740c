"""Architecture configuration of the Wan2.1 text-to-video DiT and its named presets."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass


@dataclass(kw_only=True, slots=True, frozen=True)
class WanConfig:
    """Shape of a Wan2.1 T2V diffusion transformer.

    Every field is an architecture hyperparameter; none of them is a runtime option.
    """

    dim: int = 1536
    """Width of the residual stream (channels per token)."""
    ffn_dim: int = 8960
    """Hidden width of each block's feed-forward network."""
    freq_dim: int = 256
    """Width of the sinusoidal timestep embedding."""
    num_layers: int = 30
    """Number of transformer blocks."""
    num_heads: int = 12
    """Attention heads; ``dim / num_heads`` is the head width (128 in every Wan2.1 size)."""
    in_channels: int = 16
    """Latent channels entering the patch embedding."""
    out_channels: int = 16
    """Latent channels of the predicted flow."""
    text_dim: int = 4096
    """Width of the text-encoder states (umT5-XXL: 4096)."""
    text_len: int = 512
    """Text rows the model attends to; shorter prompts are zero-padded to this length, as upstream."""
    patch_size: tuple[int, int, int] = (1, 2, 2)
    """Patch size in latent (frames, height, width)."""
    eps: float = 1e-6
    """Epsilon of the layer norms and the q/k RMS norms."""
    rope_theta: float = 10000.0
    """Base of the rotary position frequencies."""
    position_grid: tuple[int, int] | None = None
    """(height, width) token grid of a learned absolute position table added to the patch embedding, or None
    (Wan2.1: RoPE only). Not part of Wan: the toy scene world keeps each picture at fixed places, and a RoPE-only
    model given pure noise cannot tell where a token is, so it cannot place a picture it has not seen
    (``python -m training.probes.position_table`` measures the difference)."""

    def __post_init__(self) -> None:
        for name in ("dim", "ffn_dim", "freq_dim", "num_layers", "num_heads", "in_channels",
                     "out_channels", "text_dim", "text_len"):
            if getattr(self, name) <= 0:
                raise ValueError(f"WanConfig.{name} must be positive, got {getattr(self, name)}")
        if self.dim % self.num_heads:
            raise ValueError(f"WanConfig.dim ({self.dim}) must be divisible by num_heads ({self.num_heads})")
        if self.head_dim % 2 or self.head_dim < 6:
            raise ValueError(f"head width dim/num_heads = {self.head_dim} must be even and at least 6 for 3-D RoPE")
        if self.freq_dim % 2:
            raise ValueError(f"WanConfig.freq_dim must be even, got {self.freq_dim}")
        if len(self.patch_size) != 3 or min(self.patch_size) <= 0:
            raise ValueError(f"WanConfig.patch_size must be three positive ints, got {self.patch_size}")
        if self.position_grid is not None and (len(self.position_grid) != 2 or min(self.position_grid) <= 0):
            raise ValueError(f"WanConfig.position_grid must be None or two positive ints, got {self.position_grid}")

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.dim // self.num_heads

    @property
    def rope_split(self) -> tuple[int, int, int]:
        """Head dims rotated by the (frame, height, width) positions: 44/42/42 for head width 128."""
        d = self.head_dim
        return d - 4 * (d // 6), 2 * (d // 6), 2 * (d // 6)

    def to_json(self) -> str:
        """Serialise to JSON (stored in checkpoint metadata)."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> WanConfig:
        """Inverse of :meth:`to_json`; unknown fields raise ``ValueError``."""
        data = json.loads(text)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown WanConfig fields {sorted(unknown)}; allowed: {sorted(names)}")
        for name in ("patch_size", "position_grid"):
            if data.get(name) is not None:
                data[name] = tuple(data[name])
        return cls(**data)


def wan21_t2v_1_3b() -> WanConfig:
    """Wan2.1-T2V-1.3B: dim 1536, 30 layers, 12 heads, ffn 8960 (Wan-Video/Wan2.1 wan_t2v_1_3B.py)."""
    return WanConfig()


def wan21_t2v_14b() -> WanConfig:
    """Wan2.1-T2V-14B (the teacher in Self-Forcing): dim 5120, 40 layers, 40 heads, ffn 13824."""
    return WanConfig(dim=5120, ffn_dim=13824, num_layers=40, num_heads=40)


def tiny() -> WanConfig:
    """A 2-layer, 2-head model with Wan's head width 128 (so RoPE splits 44/42/42 as at full size)."""
    return WanConfig(dim=256, ffn_dim=512, freq_dim=64, num_layers=2, num_heads=2, text_dim=64, text_len=16)


def toy() -> WanConfig:
    """The toy-world student: the tiny model on the toy codec's 48-channel 8 x 8 latents (16 tokens per frame)
    with the toy text encoder's 16 rows of width 4096, and learned absolute positions over the 4 x 4 token grid.
    """
    return WanConfig(dim=256, ffn_dim=512, freq_dim=64, num_layers=2, num_heads=2, in_channels=48, out_channels=48,
                     text_dim=4096, text_len=16, position_grid=(4, 4))


def micro() -> WanConfig:
    """The smallest useful model for fast tests: 2 layers, 2 heads of width 16."""
    return WanConfig(dim=32, ffn_dim=64, freq_dim=16, num_layers=2, num_heads=2, in_channels=4,
                     out_channels=4, text_dim=8, text_len=4)


PRESETS = {
    "wan2.1-t2v-1.3b": wan21_t2v_1_3b,
    "wan2.1-t2v-14b": wan21_t2v_14b,
    "tiny": tiny,
    "toy": toy,
    "micro": micro,
}


def model_preset(name: str) -> WanConfig:
    """Return the architecture preset called ``name``."""
    if name not in PRESETS:
        raise ValueError(f"unknown model preset {name!r}; allowed: {sorted(PRESETS)}")
    return PRESETS[name]()
