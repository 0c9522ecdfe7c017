"""Sending one message to many connections of the threading API: :func:`broadcast`.

Unlike ``send()``, :func:`broadcast` never blocks: each connection's frame is
queued and written as far as its socket takes it without waiting, and the
connection's background thread writes the rest. Server connections that do
not compress the message share one frame; the others (permessage-deflate,
client connections, which mask every frame) get their own.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterable
from typing import Any, Union

from ..exceptions import ConcurrencyError
from ..protocol.connection import SERVER
from ..protocol.speedups import encode_frame
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
    if isinstance(message, str):
        payload = message.encode()
        opcode = 0x2 if text is False else 0x1
    elif isinstance(message, (bytes, bytearray, memoryview)):
        payload = bytes(message)
        opcode = 0x1 if text is True else 0x2
    else:
        raise TypeError(f"message must be str or bytes-like, not {type(message).__name__}")
    if raise_exceptions and sys.version_info < (3, 11):  # pragma: no cover - Python 3.10
        raise ValueError("raise_exceptions requires at least Python 3.11")
    # RFC 6455 5.2: FIN set, one frame per message; the same bytes for every
    # server connection that does not compress.
    frame = encode_frame(0x80 | opcode, payload, None)
    errors: list[Exception] = []
    for connection in connections:
        protocol = connection.protocol
        with connection._lock:
            if protocol.state is not OPEN or connection._lost:
                continue
            if protocol._sending:
                # RFC 6455 5.4: no other message may come between the fragments.
                error: Exception = ConcurrencyError("sending a fragmented message")
                _report(connection, error, errors, raise_exceptions)
                continue
            if connection._write_pending() > connection.write_limit:
                # The socket does not take what waits already: skip.
                connection.broadcast_skips += 1
                continue
            if protocol.deflate is None and protocol.side is SERVER:
                connection._queue([frame])
            else:
                # Its compressor, or a mask per frame: the protocol builds it.
                send = protocol.send_text if opcode == 0x1 else protocol.send_binary
                connection._queue(send(payload))
        connection._flush_nowait()
        if connection._lost and isinstance(connection._lost_exc, OSError):
            # The write failed: the connection is lost.
            error = RuntimeError("failed to write message")
            error.__cause__ = connection._lost_exc
            _report(connection, error, errors, raise_exceptions)
    if errors and sys.version_info >= (3, 11):
        raise ExceptionGroup("skipped broadcast", errors)  # noqa: F821 - a 3.11 builtin


def _report(
    connection: Connection, error: Exception, errors: list[Exception], collect: bool
) -> None:
    if collect:
        errors.append(error)
        return
    cause = error.__cause__
    if cause is None:
        connection.logger.warning("skipped broadcast: %s", error)
    else:
        connection.logger.warning(
            "skipped broadcast: %s: %s",
            error,
            traceback.format_exception_only(type(cause), cause)[0].strip(),
        )
