"""A small, reusable state machine for entity lifecycles.

Each lifecycle in Accord is an :class:`~enum.Enum` of states plus a table of the
moves each state allows. Keeping the table as data, rather than as ``if``
ladders inside each entity, means one place says what an invoice or a time
entry may do, tests can enumerate every allowed and forbidden move, and the
error raised for a forbidden move always names the entity and both states.

Entities keep extra *guards* (an invoice with payments cannot be voided) in
their own methods; the table only answers "is this move ever possible?".
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from enum import Enum
from types import MappingProxyType
from typing import Generic, TypeVar

from accord.errors import InvalidTransition

__all__ = ["Lifecycle"]

S = TypeVar("S", bound=Enum)


class Lifecycle(Generic[S]):
    """The allowed moves between the states of one entity's lifecycle.

    ``transitions`` must name every state of the enum as a key — a terminal
    state maps to an empty set — so that a state added to the enum but
    forgotten in the table is caught when the module is imported, not when a
    record first reaches it. A move to the same state is allowed only if the
    table lists it.
    """

    __slots__ = ("_states", "_table", "entity")

    def __init__(self, entity: str, transitions: Mapping[S, Iterable[S]]) -> None:
        if not transitions:
            raise ValueError(f"{entity} lifecycle has no states")
        state_type = type(next(iter(transitions)))
        states = tuple(state_type)
        table = {state: frozenset(targets) for state, targets in transitions.items()}
        missing = [state for state in states if state not in table]
        if missing:
            names = ", ".join(str(state.value) for state in missing)
            raise ValueError(f"{entity} lifecycle does not say where {names} may go")
        for state, targets in table.items():
            foreign = [target for target in targets if not isinstance(target, state_type)]
            if not isinstance(state, state_type) or foreign:
                raise ValueError(f"{entity} lifecycle mixes states of different enums")
        #: The entity name used in errors ("Invoice", "TimeEntry approval").
        self.entity = entity
        self._states: tuple[S, ...] = states
        self._table: Mapping[S, frozenset[S]] = MappingProxyType(table)

    @property
    def states(self) -> tuple[S, ...]:
        """Every state, in the enum's declaration order."""
        return self._states

    def targets(self, current: S) -> frozenset[S]:
        """The states ``current`` may move to."""
        return self._table[current]

    def allows(self, current: S, target: S) -> bool:
        return target in self._table[current]

    def is_terminal(self, state: S) -> bool:
        """True when no move leaves ``state``."""
        return not self._table[state]

    def transitions(self) -> Iterator[tuple[S, S]]:
        """Every allowed ``(current, target)`` pair, in declaration order."""
        for state in self._states:
            for target in self._states:
                if target in self._table[state]:
                    yield state, target

    def advance(self, current: S, target: S) -> S:
        """Return ``target`` if the move is allowed, else raise InvalidTransition."""
        if target not in self._table[current]:
            raise InvalidTransition(self.entity, str(current.value), str(target.value))
        return target

    def __repr__(self) -> str:
        return f"Lifecycle({self.entity!r}, {len(self._states)} states)"
