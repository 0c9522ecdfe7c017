from __future__ import annotations

import pytest

from portside.exceptions import InvalidState
from portside.protocol.state import SENDABLE, TRANSITIONS, Event, State, transition


def test_every_state_has_a_sendable_entry() -> None:
    assert set(SENDABLE) == set(State)


def test_closed_is_terminal() -> None:
    for (state, _event), target in TRANSITIONS.items():
        if state is State.CLOSED:
            assert target is State.CLOSED


def test_every_state_can_reach_closed_on_eof() -> None:
    for state in State:
        assert transition(state, Event.EOF) is State.CLOSED


@pytest.mark.parametrize(
    ("state", "event", "target"),
    [
        (State.CONNECTING, Event.ACCEPT, State.OPEN),
        (State.OPEN, Event.SEND_CLOSE, State.LOCAL_CLOSING),
        (State.OPEN, Event.RECEIVE_CLOSE, State.REMOTE_CLOSING),
        (State.LOCAL_CLOSING, Event.RECEIVE_CLOSE, State.CLOSED),
        (State.REMOTE_CLOSING, Event.SEND_CLOSE, State.CLOSED),
        (State.OPEN, Event.FAIL, State.CLOSED),
    ],
)
def test_transitions(state: State, event: Event, target: State) -> None:
    assert transition(state, event) is target


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (State.OPEN, Event.ACCEPT),
        (State.CONNECTING, Event.SEND_CLOSE),
        (State.LOCAL_CLOSING, Event.SEND_CLOSE),
        (State.CLOSED, Event.RECEIVE_CLOSE),
        (State.CLOSED, Event.ACCEPT),
    ],
)
def test_illegal_transitions(state: State, event: Event) -> None:
    with pytest.raises(InvalidState, match=f"cannot {event.value} in state {state.name}"):
        transition(state, event)
