"""Retry policy shared by workflow steps and outbound effects."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently a failing step is tried again.

    A vendor's ``Retry-After`` always wins over the computed backoff when it is
    longer: the vendor knows when its quota window opens.
    """

    initial_interval: float = 0.05
    """Seconds before the first retry."""
    backoff_coefficient: float = 2.0
    """Each further retry waits this many times longer than the one before."""
    maximum_interval: float = 30.0
    """Upper bound of one wait, in seconds (a Retry-After may exceed it)."""
    maximum_attempts: int = 6
    """Attempts in all, the first included; then the work is dead-lettered."""

    def __post_init__(self) -> None:
        if self.initial_interval < 0 or self.maximum_interval < 0:
            raise ValueError("retry intervals must not be negative")
        if self.backoff_coefficient < 1:
            raise ValueError("backoff_coefficient must be at least 1")
        if self.maximum_attempts < 1:
            raise ValueError("maximum_attempts must be at least 1")

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        backoff = min(
            self.maximum_interval,
            self.initial_interval * self.backoff_coefficient ** max(0, attempt - 1),
        )
        if retry_after is not None and retry_after > backoff:
            return retry_after
        return backoff
