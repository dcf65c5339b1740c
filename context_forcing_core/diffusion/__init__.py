"""Flow-matching schedule, few-step chunk sampler and autoregressive rollout."""
