"""The one error hierarchy of Accord.

Every error says whether trying again can help, and after how long, so that
workflows, the effect executor and the CLI decide the same way::

    AccordError
    ├── InvalidInput            bad data from a person or a system; never retried
    │   └── ScenarioError       a billing scenario that is malformed or inconsistent
    ├── RuleViolation           a domain invariant or lifecycle rule was broken
    │   └── InvalidTransition   a lifecycle move that the entity does not allow
    └── TransientError          a passing fault (network, quota, lock); retryable
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "AccordError",
    "InvalidInput",
    "InvalidTransition",
    "RuleViolation",
    "ScenarioError",
    "TransientError",
    "worth_retrying",
]


class AccordError(Exception):
    """Base of every error Accord raises on purpose."""

    #: Whether repeating the same operation unchanged may succeed.
    retryable: bool = False

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        #: Seconds to wait before a retry, when the cause says so (Retry-After).
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled as it stands, not by calling ``__init__`` again: a workflow engine
        # records a failed step's error and reads it back on recovery, and many
        # subclasses take other arguments than the message they pass up.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[AccordError], args: tuple[Any, ...], state: dict[str, Any]) -> AccordError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class InvalidInput(AccordError):
    """Input that can never succeed as given; it names the record and field."""

    def __init__(self, message: str, *, record: str | None = None, field: str | None = None):
        super().__init__(message)
        self.record = record
        self.field = field

    def __str__(self) -> str:
        where = ".".join(part for part in (self.record, self.field) if part)
        return f"{where}: {self.message}" if where else self.message


class ScenarioError(InvalidInput):
    """A billing scenario that is malformed or inconsistent."""


class RuleViolation(AccordError):
    """A domain invariant would be broken; the change is refused whole."""


class InvalidTransition(RuleViolation):
    """A lifecycle transition that the entity's state machine does not allow."""

    def __init__(self, entity: str, current: str, target: str) -> None:
        super().__init__(f"{entity} cannot go from {current!r} to {target!r}")
        self.entity = entity
        self.current = current
        self.target = target


class TransientError(AccordError):
    """A fault that may pass: a retry after ``retry_after`` seconds can help."""

    retryable = True


def worth_retrying(exc: BaseException) -> bool:
    """Whether a failed workflow step may succeed if run again (DBOS ``should_retry``).

    Bad input does not get better by retrying; anything else (a passing fault,
    a record changed underneath) may.
    """
    return not isinstance(exc, InvalidInput)
