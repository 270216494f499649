"""The generic lifecycle helper: tables as data, forbidden moves as errors."""

from __future__ import annotations

from enum import Enum, StrEnum

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.domain.lifecycle import Lifecycle
from accord.errors import InvalidTransition, RuleViolation


class Door(StrEnum):
    OPEN = "open"
    CLOSED = "closed"
    LOCKED = "locked"
    GONE = "gone"


DOOR = Lifecycle(
    "Door",
    {
        Door.OPEN: {Door.CLOSED},
        Door.CLOSED: {Door.OPEN, Door.LOCKED, Door.GONE},
        Door.LOCKED: {Door.CLOSED},
        Door.GONE: set(),
    },
)


class Colour(Enum):
    RED = 1


def test_advance_returns_the_target_of_an_allowed_move() -> None:
    assert DOOR.advance(Door.CLOSED, Door.LOCKED) is Door.LOCKED


def test_forbidden_move_raises_invalid_transition_naming_entity_and_states() -> None:
    with pytest.raises(InvalidTransition) as raised:
        DOOR.advance(Door.OPEN, Door.LOCKED)
    error = raised.value
    assert (error.entity, error.current, error.target) == ("Door", "open", "locked")
    assert str(error) == "Door cannot go from 'open' to 'locked'"


def test_invalid_transition_is_a_rule_violation_and_not_retryable() -> None:
    with pytest.raises(RuleViolation) as raised:
        DOOR.advance(Door.GONE, Door.OPEN)
    assert raised.value.retryable is False


def test_staying_in_the_same_state_is_a_move_the_table_must_list() -> None:
    with pytest.raises(InvalidTransition):
        DOOR.advance(Door.OPEN, Door.OPEN)


def test_terminal_state_has_no_targets() -> None:
    assert DOOR.is_terminal(Door.GONE)
    assert not DOOR.is_terminal(Door.LOCKED)
    assert DOOR.targets(Door.GONE) == frozenset()


def test_states_keep_enum_order_and_transitions_list_every_allowed_pair() -> None:
    assert DOOR.states == (Door.OPEN, Door.CLOSED, Door.LOCKED, Door.GONE)
    assert list(DOOR.transitions()) == [
        (Door.OPEN, Door.CLOSED),
        (Door.CLOSED, Door.OPEN),
        (Door.CLOSED, Door.LOCKED),
        (Door.CLOSED, Door.GONE),
        (Door.LOCKED, Door.CLOSED),
    ]


def test_table_that_forgets_a_state_is_refused_at_definition() -> None:
    with pytest.raises(ValueError, match="gone"):
        Lifecycle("Door", {Door.OPEN: {Door.CLOSED}, Door.CLOSED: set(), Door.LOCKED: set()})


def test_table_mixing_enums_is_refused() -> None:
    with pytest.raises(ValueError, match="different enums"):
        Lifecycle(  # type: ignore[misc]
            "Door",
            {
                Door.OPEN: {Colour.RED},
                Door.CLOSED: set(),
                Door.LOCKED: set(),
                Door.GONE: set(),
            },
        )


def test_empty_table_is_refused() -> None:
    with pytest.raises(ValueError):
        Lifecycle("Nothing", {})


def test_table_is_read_only_after_construction() -> None:
    source = {
        Door.OPEN: {Door.CLOSED},
        Door.CLOSED: {Door.OPEN},
        Door.LOCKED: set[Door](),
        Door.GONE: set[Door](),
    }
    door = Lifecycle("Door", source)
    source[Door.OPEN].add(Door.GONE)  # editing the input later changes nothing
    assert not door.allows(Door.OPEN, Door.GONE)


@given(st.lists(st.sampled_from(list(Door)), max_size=30))
def test_random_walk_only_ever_follows_allowed_moves(targets: list[Door]) -> None:
    state = Door.OPEN
    for target in targets:
        if DOOR.allows(state, target):
            state = DOOR.advance(state, target)
        else:
            with pytest.raises(InvalidTransition):
                DOOR.advance(state, target)
        assert state in DOOR.states
