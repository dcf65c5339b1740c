"""Real-data preparation: videos + captions to cached Wan latents and umT5 states, and prompt-only files."""
