"""Sending one message to many connections at once: :func:`broadcast`.

The message is encoded once and the same bytes are written to every server
connection that sends it uncompressed; each connection's frame is written
without awaiting, so a slow connection never holds the others up. What
determines a connection's bytes:

- server side, no compression (or a message below the extension's
  ``min_size``, or an 8-bit window, which zlib cannot produce): one frame,
  shared by all;
- server side, permessage-deflate *without* context takeover
  (``server_no_context_takeover``): the compressed bytes depend only on the
  window size, the level and the memory level, so the message is compressed
  once per distinct setting and shared within it;
- server side, permessage-deflate *with* context takeover (the default): each
  connection's compressor remembers the previous messages, so the message is
  compressed per connection;
- client side: every frame is masked with a fresh key (RFC 6455 5.3), so the
  frame is built per connection.

A connection whose write buffer is above its ``write_limit`` cannot keep up:
a :class:`SlowConsumerPolicy` decides what happens to it.
"""

from __future__ import annotations

import logging
import sys
import traceback
from collections.abc import Iterable
from typing import Union

from ..exceptions import ConcurrencyError
from ..protocol.connection import SERVER
from ..protocol.deflate import PerMessageDeflate
from ..protocol.speedups import encode_frame
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
    if isinstance(message, str):
        payload = message.encode()
        opcode = 0x2 if text is False else 0x1
    elif isinstance(message, (bytes, bytearray, memoryview)):
        payload = bytes(message)
        opcode = 0x1 if text is True else 0x2
    else:
        raise TypeError(f"message must be str or bytes-like, not {type(message).__name__}")
    if raise_exceptions and sys.version_info < (3, 11):  # pragma: no cover - Python 3.10
        # As websockets did while it supported 3.10: ExceptionGroup is 3.11's.
        raise ValueError("raise_exceptions requires at least Python 3.11")
    if policy is None:
        policy = DEFAULT_POLICY
    # RFC 6455 5.2: FIN set, one frame per message; the same bytes for every
    # server connection that does not compress this message.
    frame = encode_frame(0x80 | opcode, payload, None)
    track_streaks = policy.close_after is not None
    errors: list[Exception] = []
    # Compressed frames shared by connections that compress without context
    # takeover, by setting; for this message only.
    shared: dict[tuple[int, int, int], bytes] = {}
    for connection in connections:
        protocol = connection.protocol
        if protocol.state is not OPEN:
            continue
        if protocol._sending:
            # RFC 6455 5.4: no other message may come between the fragments.
            error: Exception = ConcurrencyError("sending a fragmented message")
            _report(connection, error, errors, raise_exceptions)
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
                _write_own_frame(connection, opcode, payload, frame, shared)
        except Exception as exc:
            error = RuntimeError("failed to write message")
            error.__cause__ = exc
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


def _write_own_frame(
    connection: Connection,
    opcode: int,
    payload: bytes,
    frame: bytes,
    shared: dict[tuple[int, int, int], bytes],
) -> None:
    """Write the message to a connection whose bytes may differ from ``frame``."""
    protocol = connection.protocol
    deflate = protocol.deflate
    if protocol.side is SERVER:
        assert deflate is not None
        if not deflate.can_compress or len(payload) < deflate.min_size:
            # Sent uncompressed (RFC 7692 6 allows it): the shared frame.
            connection._write_frame(frame)
            return
        if deflate.local_no_context_takeover:
            connection._write_frame(_compressed_frame(deflate, opcode, payload, shared))
            return
    # Context takeover (this connection's compressor), or a client (a mask
    # per frame): the protocol builds the frame.
    send = protocol.send_text if opcode == 0x1 else protocol.send_binary
    connection._writelines(send(payload))  # see _writelines(): CPython gh-127655


def _compressed_frame(
    deflate: PerMessageDeflate,
    opcode: int,
    payload: bytes,
    shared: dict[tuple[int, int, int], bytes],
) -> bytes:
    # What the bytes depend on, besides the message.
    key = (deflate.local_max_window_bits, deflate.level, deflate.mem_level)
    frame = shared.get(key)
    if frame is None:
        # A fresh compressor, as the connection's own would be for each message
        # without context takeover: the same bytes.
        codec = PerMessageDeflate(
            remote_no_context_takeover=True,
            local_no_context_takeover=True,
            remote_max_window_bits=15,
            local_max_window_bits=deflate.local_max_window_bits,
            level=deflate.level,
            mem_level=deflate.mem_level,
        )
        # RFC 7692 6: RSV1 marks a compressed message.
        frame = encode_frame(0xC0 | opcode, codec.compress(payload), None)
        shared[key] = frame
    return frame
