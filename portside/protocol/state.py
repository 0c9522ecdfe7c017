"""The states of a WebSocket connection and every transition between them.

The whole state machine is the :data:`TRANSITIONS` table: a pair (state, event)
that is not in it is a bug in the caller and raises :class:`InvalidState`.
:data:`SENDABLE` says which frames each state allows sending.

::

    CONNECTING --accept--> OPEN --send_close--> LOCAL_CLOSING --receive_close--+
        |                   |                                                   |
        |                   +--receive_close--> REMOTE_CLOSING --send_close---->+
        |                   |                                                   v
        +--reject / eof-----+--fail / eof-------------------------------------> CLOSED
"""

from __future__ import annotations

import enum

from ..exceptions import InvalidState

__all__ = [
    "State",
    "Event",
    "TRANSITIONS",
    "SENDABLE",
    "transition",
    "CONNECTING",
    "OPEN",
    "LOCAL_CLOSING",
    "REMOTE_CLOSING",
    "CLOSED",
]


class State(enum.IntEnum):
    """The state of a WebSocket connection (RFC 6455 sections 4, 5.5.1 and 7)."""

    #: The opening handshake is in progress.
    CONNECTING = 0
    #: Messages flow both ways.
    OPEN = 1
    #: This side sent a Close frame and waits for the peer's.
    LOCAL_CLOSING = 2
    #: The peer sent a Close frame; this side has not answered yet.
    REMOTE_CLOSING = 3
    #: The closing handshake is over or the connection failed; only the TCP
    #: connection remains to be closed.
    CLOSED = 4


class Event(enum.Enum):
    """What happens to a connection."""

    ACCEPT = "accept"  # the opening handshake succeeded
    REJECT = "reject"  # the opening handshake failed
    SEND_CLOSE = "send_close"
    RECEIVE_CLOSE = "receive_close"
    FAIL = "fail"  # RFC 6455 7.1.7: Fail the WebSocket Connection
    EOF = "eof"  # the TCP connection ended


# Module-level names for the states: reading ``State.OPEN`` costs a slow enum
# class attribute lookup on every call, which hot paths cannot afford.
CONNECTING = State.CONNECTING
OPEN = State.OPEN
LOCAL_CLOSING = State.LOCAL_CLOSING
REMOTE_CLOSING = State.REMOTE_CLOSING
CLOSED = State.CLOSED

S = State
E = Event

#: Every legal transition: ``(state, event) -> new state``.
TRANSITIONS: dict[tuple[State, Event], State] = {
    (S.CONNECTING, E.ACCEPT): S.OPEN,
    (S.CONNECTING, E.REJECT): S.CLOSED,
    (S.CONNECTING, E.EOF): S.CLOSED,
    (S.OPEN, E.SEND_CLOSE): S.LOCAL_CLOSING,
    (S.OPEN, E.RECEIVE_CLOSE): S.REMOTE_CLOSING,
    (S.OPEN, E.FAIL): S.CLOSED,
    (S.OPEN, E.EOF): S.CLOSED,
    (S.LOCAL_CLOSING, E.RECEIVE_CLOSE): S.CLOSED,
    (S.LOCAL_CLOSING, E.FAIL): S.CLOSED,
    (S.LOCAL_CLOSING, E.EOF): S.CLOSED,
    (S.REMOTE_CLOSING, E.SEND_CLOSE): S.CLOSED,
    (S.REMOTE_CLOSING, E.FAIL): S.CLOSED,
    (S.REMOTE_CLOSING, E.EOF): S.CLOSED,
    (S.CLOSED, E.FAIL): S.CLOSED,
    (S.CLOSED, E.EOF): S.CLOSED,
}

#: The frames each state allows sending.
SENDABLE: dict[State, frozenset[str]] = {
    S.CONNECTING: frozenset(),
    S.OPEN: frozenset({"data", "ping", "pong", "close"}),
    # RFC 6455 5.5.1: after sending a Close frame, send no more data frames; a
    # Ping received meanwhile still gets its Pong (5.5.2).
    S.LOCAL_CLOSING: frozenset({"pong"}),
    S.REMOTE_CLOSING: frozenset({"close"}),
    S.CLOSED: frozenset(),
}


def transition(state: State, event: Event) -> State:
    """Return the state that ``event`` leads to from ``state``.

    Raises:
        InvalidState: If the table has no such transition.
    """
    try:
        return TRANSITIONS[state, event]
    except KeyError:
        raise InvalidState(f"cannot {event.value} in state {state.name}") from None
