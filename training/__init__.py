"""Training CLI (``python -m training.run``) reusing ``context_forcing_core``; built by the training issue."""
