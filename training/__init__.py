"""Training CLI (``python -m training.run``) and pipeline (``python -m training.pipeline``) on ``context_forcing_core``."""
