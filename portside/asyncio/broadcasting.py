"""Sending one message to many connections at once: :func:`broadcast`.

The message is encoded once, and each connection's frame is written without
awaiting, so a slow connection never holds the others up. Which connections
share which bytes (all server connections that send the message uncompressed,
those that compress it without context takeover by setting) is
:class:`~portside.protocol.broadcast.BroadcastMessage`'s to say.

A connection whose write buffer is above its ``write_limit`` cannot keep up:
a :class:`SlowConsumerPolicy` decides what happens to it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Union

from ..exceptions import ConcurrencyError
from ..protocol.broadcast import BroadcastMessage
from ..protocol.connection import SERVER
from ..protocol.state import OPEN
from .connection import Connection

__all__ = ["SlowConsumerPolicy", "broadcast", "DEFAULT_POLICY"]

logger = logging.getLogger("portside.broadcast")

BytesLike = Union[bytes, bytearray, memoryview]


class SlowConsumerPolicy:
    """What :func:`broadcast` does with a connection that cannot keep up.

    A connection cannot keep up when its write buffer holds more than its
    ``write_limit`` (the transport paused writing): the message is *skipped*
    for it -- not written, and counted. With ``close_after=None`` (the
    default) that is all: the connection misses messages until its buffer
    drains below a quarter of ``write_limit``. With ``close_after=N``, a
    connection that misses more than ``N`` messages in a row is closed with
    ``close_code`` (1013, "try again later"): it receives no more broadcasts and
    its client can reconnect and resynchronize. Memory stays bounded either
    way: at most ``write_limit`` plus one message per connection.

    Other code that writes to many connections (a pub/sub hub, say) applies the
    same policy by calling :meth:`admit` before each write.

    Args:
        close_after: Close a connection that missed more than this many
            messages in a row; ``None``: never close, only skip.
        close_code: The close code; 1013 (try again later) by default.
        close_reason: The close reason.

    Attributes:
        skipped: Messages skipped, over every connection, since creation.
        closed: Connections closed by the policy, since creation.
    """

    def __init__(
        self,
        *,
        close_after: int | None = None,
        close_code: int = 1013,
        close_reason: str = "too slow to keep up",
    ) -> None:
        if close_after is not None and (isinstance(close_after, bool) or close_after < 0):
            raise ValueError(f"close_after must be an int >= 0 or None, not {close_after!r}")
        self.close_after = close_after
        self.close_code = close_code
        self.close_reason = close_reason
        self.skipped = 0
        self.closed = 0

    def __repr__(self) -> str:
        return (
            f"SlowConsumerPolicy(close_after={self.close_after}, "
            f"skipped={self.skipped}, closed={self.closed})"
        )

    def admit(self, connection: Connection) -> bool:
        """Tell whether ``connection`` can take a message now; if not, skip it.

        Returns:
            ``True`` if its write buffer is within ``write_limit``: write the
            message. ``False`` if the message was skipped for it (counted, and
            the connection closed if it is past ``close_after``).
        """
        if connection._write_paused:
            self.skip(connection)
            return False
        if self.close_after is not None:
            self.sent(connection)
        return True

    def skip(self, connection: Connection) -> None:
        """Count a message skipped for ``connection``; close it past ``close_after``."""
        self.skipped += 1
        connection.broadcast_skips += 1
        if self.close_after is None:
            return
        streak = connection._broadcast_streak + 1
        connection._broadcast_streak = streak
        if streak > self.close_after and connection.protocol.state is OPEN:
            self.closed += 1
            connection.logger.info(
                "%s: closing with %d after %d skipped broadcasts: write buffer above %d bytes",
                connection._peer_name(),
                self.close_code,
                streak,
                connection.write_limit,
            )
            connection._start_close(self.close_code, self.close_reason)

    def sent(self, connection: Connection) -> None:
        """Note that ``connection`` took a message: its streak of skips ends."""
        if connection._broadcast_streak:
            connection._broadcast_streak = 0


#: The policy :func:`broadcast` applies when given none: skip, never close.
#: Its ``skipped`` attribute counts the messages it skipped in the process.
DEFAULT_POLICY = SlowConsumerPolicy()


def broadcast(
    connections: Iterable[Connection],
    message: str | BytesLike,
    *,
    text: bool | None = None,
    raise_exceptions: bool = False,
    policy: SlowConsumerPolicy | None = None,
) -> None:
    """Send ``message`` to every open connection of ``connections``, without waiting.

    A ``str`` goes out as a text message, bytes-like objects as a binary one;
    ``text=True`` sends UTF-8 bytes as text, ``text=False`` a ``str`` as binary.
    The frames are written to each connection's transport at once: nothing is
    awaited, and there is no fragmentation.

    Connections that are not open (still in the handshake, closing, closed)
    are skipped silently. A connection in the middle of sending a fragmented
    message is skipped too (its peer could not tell the messages apart), with
    a warning or a :class:`~portside.exceptions.ConcurrencyError`. A connection
    whose write buffer is above its ``write_limit`` is handed to ``policy``
    (:data:`DEFAULT_POLICY` when ``None``): the message is skipped and counted
    in ``connection.broadcast_skips`` and ``policy.skipped``, and the policy
    may close the connection.

    Args:
        connections: The connections, server or client side.
        message: The message.
        text: Override the frame type; ``None``: from the type of ``message``.
        raise_exceptions: Collect the errors (fragmented sends, failed writes)
            and raise them together in an :class:`ExceptionGroup` after
            writing to every other connection; by default they are logged and
            ignored. Needs Python 3.11 or later, like websockets'.
        policy: What to do with connections that cannot keep up.

    Raises:
        TypeError: If ``message`` is not ``str`` or bytes-like.
        ValueError: If ``raise_exceptions`` is set on Python 3.10.
    """
    encoded = BroadcastMessage(message, text, raise_exceptions)
    if policy is None:
        policy = DEFAULT_POLICY
    frame = encoded.frame
    track_streaks = policy.close_after is not None
    for connection in connections:
        protocol = connection.protocol
        if protocol.state is not OPEN:
            continue
        if protocol._sending:
            # RFC 6455 5.4: no other message may come between the fragments.
            encoded.report(connection.logger, ConcurrencyError("sending a fragmented message"))
            continue
        if connection._write_paused:
            policy.skip(connection)
            continue
        if track_streaks and connection._broadcast_streak:
            connection._broadcast_streak = 0
        try:
            if protocol.deflate is None and protocol.side is SERVER:
                # On the socket itself when the transport would send at once
                # (the C accelerator), else transport.write().
                connection._write_frame(frame)
            else:
                # The write barrier first (as _write_frame() calls it): what it
                # writes may be compressed with this connection's context, which
                # must see the messages in the order of the wire.
                connection._before_write()
                frames = encoded.frames_for(protocol)
                if isinstance(frames, bytes):
                    connection._write_frame(frames)
                else:
                    connection._writelines(frames)  # see _writelines(): CPython gh-127655
        except Exception as exc:
            error = RuntimeError("failed to write message")
            error.__cause__ = exc
            encoded.report(connection.logger, error)
    encoded.raise_errors()
