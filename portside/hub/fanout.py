"""Local fan-out: messages to many connections of this process.

The only place where the hub writes messages to its subscribers' connections.
One message goes through :func:`~portside.broadcast`, which builds each frame
once; several (a burst published within one iteration of the event loop) go
out in one write per subscriber.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from ..asyncio.broadcasting import SlowConsumerPolicy, broadcast
from ..asyncio.connection import Connection
from ..protocol.connection import SERVER
from ..protocol.speedups import encode_frame
from ..protocol.state import OPEN

__all__ = ["fan_out", "writable"]


def writable(connection: Connection) -> bool:
    """Whether ``connection`` can take a message now: open, and its backlog not full.

    The backlog is what the transport holds unsent; it is full above the
    connection's ``write_limit`` and stays full until it drained to a quarter
    of it.
    """
    return connection.protocol.state is OPEN and not connection._write_paused


class _Remember(SlowConsumerPolicy):
    """Skips a full connection (never closes it) and remembers it for the hub."""

    def __init__(self) -> None:
        super().__init__()
        self.connections: list[Connection] = []

    def skip(self, connection: Connection) -> None:
        super().skip(connection)  # counted in connection.broadcast_skips
        self.connections.append(connection)


def fan_out(
    connections: Collection[Connection], messages: Sequence[str | bytes]
) -> list[Connection]:
    """Send ``messages``, in order, to each connection whose backlog is not full.

    Args:
        connections: The subscribers.
        messages: Text (``str``) or binary (``bytes``) messages.

    Returns:
        The open connections skipped because their backlog was full (or, for
        a burst, because they were sending a fragmented message). Those closing
        or closed are left out silently: they are going away.
    """
    if len(messages) == 1:
        policy = _Remember()
        broadcast(connections, messages[0], policy=policy)
        return policy.connections
    skipped: list[Connection] = []
    # RFC 6455 5.2: FIN set, one frame per message, unmasked from a server;
    # the same bytes for every server connection that does not compress.
    shared = b"".join(
        encode_frame(0x81, message.encode(), None)
        if isinstance(message, str)
        else encode_frame(0x82, message, None)
        for message in messages
    )
    for connection in connections:
        protocol = connection.protocol
        if protocol.state is not OPEN:
            continue
        if connection._write_paused or protocol._sending:
            # RFC 6455 5.4: nothing may come between the frames of a fragmented
            # message; a full backlog takes nothing more.
            connection.broadcast_skips += len(messages)
            skipped.append(connection)
        elif protocol.deflate is None and protocol.side is SERVER:
            connection._write_frame(shared)
        else:
            for message in messages:
                if isinstance(message, str):
                    frames = protocol.send_text(message)
                else:
                    frames = protocol.send_binary(message)
                connection.transport.writelines(frames)
    return skipped
