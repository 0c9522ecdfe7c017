"""One message for many connections, without I/O: what ``broadcast()`` writes to each.

``broadcast()`` of the asyncio and threading layers encodes the message once
(:class:`BroadcastMessage`), asks it for each open connection's bytes
(:meth:`BroadcastMessage.frames_for`) and writes them its own way. What
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

A connection that cannot take the message (sending a fragmented message, a
failed write) is skipped: :meth:`BroadcastMessage.report` logs it, or collects
it for :meth:`BroadcastMessage.raise_errors` with ``raise_exceptions=True``.
"""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Any, Union

from .connection import SERVER, Protocol
from .deflate import PerMessageDeflate
from .speedups import encode_frame

__all__ = ["BroadcastMessage"]

BytesLike = Union[bytes, bytearray, memoryview]


class BroadcastMessage:
    """A message encoded once for many connections.

    Args:
        message: A ``str`` is sent as a text message, a bytes-like object as a
            binary one.
        text: Override the frame type; ``None``: from the type of ``message``.
        raise_exceptions: Collect the errors :meth:`report` is given, for
            :meth:`raise_errors`, rather than logging them. Needs Python 3.11.

    Raises:
        TypeError: If ``message`` is not ``str`` or bytes-like.
        ValueError: If ``raise_exceptions`` is set on Python 3.10.

    Attributes:
        opcode: 0x1 (text) or 0x2 (binary).
        payload: The message's bytes.
        frame: The message in one uncompressed, unmasked frame: the bytes of
            every server connection that does not compress it.
        errors: The errors collected with ``raise_exceptions``.
    """

    __slots__ = ("_shared", "errors", "frame", "opcode", "payload", "raise_exceptions")

    def __init__(
        self, message: str | BytesLike, text: bool | None = None, raise_exceptions: bool = False
    ) -> None:
        if isinstance(message, str):
            self.payload = message.encode()
            self.opcode = 0x2 if text is False else 0x1
        elif isinstance(message, (bytes, bytearray, memoryview)):
            self.payload = bytes(message)
            self.opcode = 0x1 if text is True else 0x2
        else:
            raise TypeError(f"message must be str or bytes-like, not {type(message).__name__}")
        if raise_exceptions and sys.version_info < (3, 11):  # pragma: no cover - Python 3.10
            # As websockets did while it supported 3.10: ExceptionGroup is 3.11's.
            raise ValueError("raise_exceptions requires at least Python 3.11")
        self.raise_exceptions = raise_exceptions
        # RFC 6455 5.2: FIN set, one frame per message; the same bytes for every
        # server connection that does not compress this message.
        self.frame = encode_frame(0x80 | self.opcode, self.payload, None)
        self.errors: list[Exception] = []
        # Compressed frames shared by connections that compress without context
        # takeover, by setting.
        self._shared: dict[tuple[int, int, int], bytes] = {}

    def frames_for(self, protocol: Protocol) -> bytes | list[bytes]:
        """Return what to write to the connection of ``protocol``, which is open.

        Returns:
            ``bytes``: a frame that other connections share (:attr:`frame`, or
            the message compressed once for their setting). A ``list``: the
            frames ``protocol`` built for this connection alone (its
            compressor, or its mask).
        """
        deflate = protocol.deflate
        if protocol.side is SERVER:
            if deflate is None or not deflate.can_compress or len(self.payload) < deflate.min_size:
                # Sent uncompressed (RFC 7692 6 allows it): the shared frame.
                return self.frame
            if deflate.local_no_context_takeover:
                return self._compressed_frame(deflate)
        # Context takeover (this connection's compressor), or a client (a mask
        # per frame): the protocol builds the frame.
        send = protocol.send_text if self.opcode == 0x1 else protocol.send_binary
        return send(self.payload)

    def _compressed_frame(self, deflate: PerMessageDeflate) -> bytes:
        # What the bytes depend on, besides the message.
        key = (deflate.local_max_window_bits, deflate.level, deflate.mem_level)
        frame = self._shared.get(key)
        if frame is None:
            # A fresh compressor, as the connection's own would be for each
            # message without context takeover: the same bytes.
            codec = PerMessageDeflate(
                remote_no_context_takeover=True,
                local_no_context_takeover=True,
                remote_max_window_bits=15,
                local_max_window_bits=deflate.local_max_window_bits,
                level=deflate.level,
                mem_level=deflate.mem_level,
            )
            # RFC 7692 6: RSV1 marks a compressed message.
            frame = encode_frame(0xC0 | self.opcode, codec.compress(self.payload), None)
            self._shared[key] = frame
        return frame

    def report(self, logger: logging.Logger | logging.LoggerAdapter[Any], error: Exception) -> None:
        """Note that a connection was skipped because of ``error``.

        Args:
            logger: The connection's logger, which gets a warning unless the
                errors are collected (``raise_exceptions``).
            error: What went wrong; its ``__cause__``, if any, is logged too.
        """
        if self.raise_exceptions:
            self.errors.append(error)
            return
        cause = error.__cause__
        if cause is None:
            logger.warning("skipped broadcast: %s", error)
        else:
            logger.warning(
                "skipped broadcast: %s: %s",
                error,
                traceback.format_exception_only(type(cause), cause)[0].strip(),
            )

    def raise_errors(self) -> None:
        """Raise the errors collected, if any, together in an ``ExceptionGroup``."""
        if self.errors and sys.version_info >= (3, 11):
            raise ExceptionGroup("skipped broadcast", self.errors)  # noqa: F821 - a 3.11 builtin
