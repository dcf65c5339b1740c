"""Context Forcing core: a Wan2.1-compatible causal video DiT with a bounded Slow-Fast Memory.

Never imports ComfyUI, the node pack or the training CLI.
"""

from .diffusion.prompts import PromptSchedule
from .diffusion.sampler import ChunkOutput, Generation, generate, sample_chunk, stream
from .diffusion.schedule import warp_timesteps
from .memory.config import MemoryConfig, memory_preset
from .memory.slow_fast import SlowFastMemory
from .memory.trace import MemoryTrace
from .models.config import WanConfig, model_preset
from .models.loading import load_model, save_model
from .models.wan import TextContext, WanModel

__all__ = [
    "ChunkOutput", "Generation", "MemoryConfig", "MemoryTrace", "PromptSchedule", "SlowFastMemory", "TextContext",
    "WanConfig", "WanModel", "generate", "load_model", "memory_preset", "model_preset", "sample_chunk", "save_model",
    "stream", "warp_timesteps",
]
