"""Sending one message to many connections of the threading API: :func:`broadcast`.

Unlike ``send()``, :func:`broadcast` never blocks: each connection's frame is
queued and written as far as its socket takes it without waiting, and the
connection's background thread writes the rest. Which connections share which
bytes (server connections that send the message uncompressed, those that
compress it without context takeover, by setting) is
:class:`~portside.protocol.broadcast.BroadcastMessage`'s to say.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Union

from ..exceptions import ConcurrencyError
from ..protocol.broadcast import BroadcastMessage
from ..protocol.connection import SERVER
from ..protocol.state import OPEN
from .connection import Connection

__all__ = ["broadcast"]

BytesLike = Union[bytes, bytearray, memoryview]


def broadcast(
    connections: Iterable[Connection],
    message: str | BytesLike,
    raise_exceptions: bool = False,
    *,
    text: bool | None = None,
    **kwargs: Any,
) -> None:
    """Send ``message`` to every open connection of ``connections``, without waiting.

    A ``str`` goes out as a text message, bytes-like objects as a binary one;
    ``text=True`` sends UTF-8 bytes as text, ``text=False`` a ``str`` as binary.
    There is no fragmentation.

    Connections that are not open (closing, closed) are skipped silently. A
    connection in the middle of sending a fragmented message is skipped too,
    with a warning or a :class:`~portside.exceptions.ConcurrencyError`. A
    connection that cannot keep up -- more than its ``write_limit`` bytes wait
    for its socket -- misses the message: it is counted in
    ``connection.broadcast_skips``, and memory stays bounded.

    Args:
        connections: The connections, server or client side.
        message: The message.
        raise_exceptions: Collect the errors (fragmented sends, failed writes)
            and raise them together in an :class:`ExceptionGroup` once every
            other connection has the message; by default they are logged and
            ignored. Needs Python 3.11 or later.
        text: Override the frame type; ``None``: from the type of ``message``.
        **kwargs: Accepted for websockets' ``ThreadPoolExecutor`` options
            (``max_workers``...), which a broadcast that never blocks does not
            need; ignored.

    Raises:
        TypeError: If ``message`` is not ``str`` or bytes-like.
        ValueError: If ``raise_exceptions`` is set on Python 3.10.
    """
    encoded = BroadcastMessage(message, text, raise_exceptions)
    frame = encoded.frame
    for connection in connections:
        protocol = connection.protocol
        with connection._lock:
            if protocol.state is not OPEN or connection._lost:
                continue
            if protocol._sending:
                # RFC 6455 5.4: no other message may come between the fragments.
                error: Exception = ConcurrencyError("sending a fragmented message")
                encoded.report(connection.logger, error)
                continue
            if connection._write_pending() > connection.write_limit:
                # The socket does not take what waits already: skip.
                connection.broadcast_skips += 1
                continue
            if protocol.deflate is None and protocol.side is SERVER:
                connection._queue([frame])
            else:
                frames = encoded.frames_for(protocol)
                connection._queue([frames] if isinstance(frames, bytes) else frames)
        connection._flush_nowait()
        if connection._lost and isinstance(connection._lost_exc, OSError):
            # The write failed: the connection is lost.
            error = RuntimeError("failed to write message")
            error.__cause__ = connection._lost_exc
            encoded.report(connection.logger, error)
    encoded.raise_errors()
