"""Local fan-out: one message to many connections of this process.

The only place where the hub writes a message to its subscribers' connections.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..asyncio.connection import Connection
from ..protocol.state import OPEN

__all__ = ["fan_out", "writable"]


def writable(connection: Connection) -> bool:
    """Whether ``connection`` can take a message now: open, and its backlog not full.

    The backlog is what the transport holds unsent; it is full above the
    connection's ``write_limit`` and stays full until it drained to a quarter
    of it.
    """
    return connection.protocol.state is OPEN and not connection._write_paused


def fan_out(connections: Iterable[Connection], message: str | bytes) -> list[Connection]:
    """Send ``message`` to each connection whose backlog is not full.

    Each frame is built once for all the connections that share its encoding
    (no compression); a connection that compresses gets its own.

    Args:
        connections: The subscribers.
        message: A text (``str``) or binary (``bytes``) message.

    Returns:
        The open connections skipped because their backlog was full. Those that
        are closing or closed are left out silently: they are going away.
    """
    skipped: list[Connection] = []
    shared: list[bytes] | None = None
    text = isinstance(message, str)
    for connection in connections:
        protocol = connection.protocol
        if protocol.state is not OPEN:
            continue
        if connection._write_paused:
            skipped.append(connection)
            continue
        if protocol.deflate is None and not protocol._sending:
            if shared is None:
                shared = protocol.send_text(message) if text else protocol.send_binary(message)  # type: ignore[arg-type]
            connection.transport.writelines(shared)
        elif not protocol._sending:
            frames = protocol.send_text(message) if text else protocol.send_binary(message)  # type: ignore[arg-type]
            connection.transport.writelines(frames)
        else:
            # A fragmented message is being sent on it: this one cannot cut in.
            skipped.append(connection)
    return skipped
