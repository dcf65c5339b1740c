"""What a preparation run did: counts of encoded, already-cached and skipped items (by reason), and its duration."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

logger = logging.getLogger("training.data")


class SkipItem(Exception):
    """Raised for one unusable input (a bad file or row); the caller counts it and moves on, the run never stops.

    Args:
        reason: Short counter name, e.g. ``"corrupt"``, ``"too_short"``, ``"missing_file"``.
        detail: Human-readable explanation (first line is logged).

    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


@dataclass(kw_only=True, slots=True)
class PrepareReport:
    """Counts of one ``prepare-data`` run."""

    encoded: int = 0
    """Items encoded and written by this run."""
    cached: int = 0
    """Items found already encoded in the output folder (a resumed run skips them)."""
    skipped: dict[str, int] = field(default_factory=dict)
    """Skipped items by reason (``missing_file``, ``corrupt``, ``too_short``, ``empty_caption``, ``blank``, ...)."""
    seconds: float = 0.0
    """Wall-clock duration of the run in seconds."""

    @property
    def total_skipped(self) -> int:
        """Skipped items over all reasons."""
        return sum(self.skipped.values())

    @property
    def seen(self) -> int:
        """Items looked at: encoded + cached + skipped."""
        return self.encoded + self.cached + self.total_skipped

    def skip(self, source: str, err: SkipItem, *, warn: bool = True) -> None:
        """Count one skipped item under ``err.reason`` and, by default, log one warning naming it."""
        self.skipped[err.reason] = self.skipped.get(err.reason, 0) + 1
        if warn:
            logger.warning("skipping %s: %s (%s)", source, err.reason, err.detail.strip().splitlines()[0]
                           if err.detail.strip() else "")

    def summary(self) -> str:
        """One line: encoded, cached, skipped by reason, seconds."""
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(self.skipped.items())) or "none"
        return (f"{self.encoded} encoded, {self.cached} already cached, {self.total_skipped} skipped ({reasons}) "
                f"in {self.seconds:.1f} s")
