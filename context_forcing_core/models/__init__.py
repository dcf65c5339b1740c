"""Wan2.1 DiT (bidirectional teacher, causal student), attention contexts, checkpoint loading."""
