"""What a toy world adds to training; importing this package registers it with ``training.updates``."""

from . import scenes  # noqa: F401
