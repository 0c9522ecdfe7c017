"""The sans-I/O WebSocket connection: bytes in, events and bytes out.

:class:`Protocol` knows RFC 6455 and RFC 7692 and nothing about sockets, event
loops or clocks. The I/O layer above it:

- gives it received bytes: :meth:`~FrameReader.get_buffer` then
  :meth:`~FrameReader.buffer_updated` (or :meth:`~FrameReader.receive_data`), and
  :meth:`receive_eof` when the peer closes the TCP connection;
- acts on the events they return: messages, :class:`Ping`, :class:`Pong`,
  :class:`Close`, or a :class:`ProtocolError` to fail the connection on;
- writes what :meth:`data_to_send` returns (Pongs and Close replies the protocol
  produced while receiving) and what the ``send_*`` methods return;
- closes the TCP connection when :attr:`state` is ``CLOSED`` -- the server right
  away, the client after waiting a while for the server to do it
  (RFC 6455 section 7.1.1): :meth:`close_expected` tells when to arm that timer.
"""

from __future__ import annotations

import enum
import os
from typing import Union

from ..exceptions import (
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidState,
    ProtocolError,
)
from .close import OK_CLOSE_CODES, Close
from .events import Ping, Pong
from .reader import Arena, Event, FrameReader
from .speedups import encode_frame as _encode_frame
from .speedups import encode_header as _encode_header
from .state import (
    CLOSED,
    CONNECTING,
    LOCAL_CLOSING,
    OPEN,
    REMOTE_CLOSING,
    SENDABLE,
    State,
    transition,
)
from .state import Event as Transition

__all__ = ["Side", "Protocol", "SERVER", "CLIENT"]

Buffer = Union[bytes, bytearray, memoryview]

# Payloads at least this large are written as a separate buffer after the header
# instead of being copied behind it.
_COPY_THRESHOLD = 4096

_OP_CONTINUATION = 0x0
_OP_TEXT = 0x1
_OP_BINARY = 0x2
_OP_CLOSE = 0x8
_OP_PING = 0x9
_OP_PONG = 0xA


def _byte_view(data: memoryview) -> memoryview | bytes:
    """A view whose length counts bytes, whatever the format of ``data``."""
    if data.itemsize == 1 and data.c_contiguous:
        return data
    return data.tobytes() if not data.c_contiguous else data.cast("B")


class Side(enum.Enum):
    """Which end of the connection this is."""

    SERVER = "server"
    CLIENT = "client"


SERVER = Side.SERVER
CLIENT = Side.CLIENT


class Protocol(FrameReader):
    """One WebSocket connection, either side, without I/O.

    Args:
        side: :data:`SERVER` or :data:`CLIENT`.
        state: The initial state; ``OPEN`` unless a handshake comes first.
        max_size: The largest message accepted, in bytes (after decompression);
            ``None`` for no limit. Larger ones fail the connection with 1009.
        read_limit: The most bytes taken from the network in one read.
        arena: A receive buffer to share with other connections of this thread.

    Attributes:
        side: The side of the connection.
        state: The current :class:`State`.
        close_rcvd: The Close frame received, if any.
        close_sent: The Close frame sent, if any.
        close_rcvd_then_sent: Whether the peer started the closing handshake;
            ``None`` until both Close frames crossed.
        eof_rcvd: Whether the peer closed the TCP connection.
    """

    __slots__ = (
        "_mask_pos",
        "_masks",
        "_out",
        "_pings",
        "_sending",
        "_sending_compressed",
        "close_rcvd",
        "close_rcvd_then_sent",
        "close_sent",
        "eof_rcvd",
        "side",
        "state",
    )

    def __init__(
        self,
        side: Side,
        *,
        state: State = OPEN,
        max_size: int | None = 2**20,
        read_limit: int = 2**16,
        arena: Arena | None = None,
    ) -> None:
        super().__init__(
            masked=side is SERVER, max_size=max_size, read_limit=read_limit, arena=arena
        )
        self.side = side
        self.state = state
        self.close_rcvd: Close | None = None
        self.close_sent: Close | None = None
        self.close_rcvd_then_sent: bool | None = None
        self.eof_rcvd = False
        self._out: list[bytes] = []
        # RFC 6455 5.3: a fresh, unpredictable masking key for every frame a
        # client sends; drawn from the OS CSPRNG a thousand at a time.
        self._masks = b""
        self._mask_pos = 0
        self._pings: dict[bytes, None] = {}  # pings awaiting a pong, in order
        self._sending = 0  # opcode of the fragmented message being sent, or 0
        self._sending_compressed = False

    def __repr__(self) -> str:
        return f"<{self.__class__.__name__} {self.side.value} {self.state.name}>"

    # Receiving.

    def receive_eof(self) -> None:
        """Note that the peer closed the TCP connection."""
        self.eof_rcvd = True
        self._reading = False
        self.state = transition(self.state, Transition.EOF)

    def _on_control(self, opcode: int, payload: bytes, events: list[Event]) -> None:
        if opcode == _OP_PING:
            # RFC 6455 5.5.2: answer with a Pong carrying the same data, unless a
            # Close frame was received already (then the reader has stopped).
            if "pong" in SENDABLE[self.state]:
                self._out += self._frame(_OP_PONG, payload)
            events.append(Ping(payload))
        elif opcode == _OP_PONG:
            events.append(Pong(payload, self._acknowledge(payload)))
        else:
            # Raises ProtocolError or InvalidUTF8 for a bad payload (RFC 6455 7.4).
            close = Close.parse(payload)
            self.close_rcvd = close
            # RFC 6455 5.5.1: after a Close frame, ignore everything received.
            self._reading = False
            self._reset_message()
            self.state = transition(self.state, Transition.RECEIVE_CLOSE)
            if self.state is REMOTE_CLOSING:
                # RFC 6455 5.5.1: answer with a Close frame, echoing the code.
                self.close_rcvd_then_sent = True
                self._send_close(Close(close.code))
            else:
                self.close_rcvd_then_sent = False
            events.append(close)

    def _acknowledge(self, data: bytes) -> tuple[bytes, ...]:
        pings = self._pings
        if data not in pings:
            return ()
        acked = []
        for ping in pings:
            acked.append(ping)
            if ping == data:
                break
        for ping in acked:
            del pings[ping]
        return tuple(acked)

    # Sending.

    def data_to_send(self) -> list[bytes]:
        """Return the bytes produced while receiving (Pongs, Close replies).

        The ``send_*`` methods return their own bytes; this returns the rest and
        empties the outgoing buffer.
        """
        out = self._out
        if out:
            self._out = []
        return out

    def _next_mask(self) -> bytes:
        pos = self._mask_pos
        if pos >= len(self._masks):
            self._masks = os.urandom(4096)
            pos = 0
        self._mask_pos = pos + 4
        return self._masks[pos : pos + 4]

    def _frame(
        self, opcode: int, payload: Buffer, fin: bool = True, rsv1: bool = False
    ) -> list[bytes]:
        """Encode one frame; return the buffers to write, in order."""
        first = opcode | (0x80 if fin else 0) | (0x40 if rsv1 else 0)
        if self.side is CLIENT:
            # RFC 6455 5.3: every frame from a client is masked.
            return [_encode_frame(first, payload, self._next_mask())]
        if len(payload) >= _COPY_THRESHOLD:
            return [_encode_header(first, len(payload), None), bytes(payload)]
        return [_encode_frame(first, payload, None)]

    def _check_sendable(self, kind: str) -> None:
        if kind not in SENDABLE[self.state]:
            if self.state is CONNECTING:
                raise InvalidState("the opening handshake is not complete")
            raise self.closed_error()

    def _send_data(self, opcode: int, data: Buffer, fin: bool) -> list[bytes]:
        if self.state is not OPEN:
            self._check_sendable("data")
        sending = self._sending
        if opcode:
            if sending:
                raise InvalidState("a fragmented message is being sent")
        elif not sending:
            raise InvalidState("no fragmented message to continue")
        deflate = self.deflate
        if deflate is None or not deflate.can_compress:
            frames = self._frame(opcode, data, fin)
        else:
            if opcode:
                # Small single-frame messages are not worth compressing; every
                # frame of a fragmented message goes through the compressor.
                self._sending_compressed = not fin or len(data) >= deflate.min_size
            if self._sending_compressed:
                # RFC 7692 6: RSV1 marks the first frame of a compressed message.
                frames = self._frame(
                    opcode, deflate.compress(bytes(data), fin), fin, rsv1=bool(opcode)
                )
            else:
                frames = self._frame(opcode, data, fin)
        self._sending = 0 if fin else (opcode or sending)
        return frames

    def send_text(self, data: str | Buffer, fin: bool = True) -> list[bytes]:
        """Start a text message; ``fin=False`` makes it the first fragment.

        Args:
            data: The text, as ``str`` or as UTF-8 encoded bytes.
            fin: Whether this frame ends the message.

        Returns:
            The bytes to write.
        """
        if isinstance(data, str):
            data = data.encode()
        elif data.__class__ is memoryview:
            data = _byte_view(data)
        if fin and self.state is OPEN and not self._sending and self.deflate is None:
            # Fast path for the common case: one whole message, no extension.
            if self.side is CLIENT:
                return [_encode_frame(0x81, data, self._next_mask())]
            if len(data) < _COPY_THRESHOLD:
                return [_encode_frame(0x81, data, None)]
        return self._send_data(_OP_TEXT, data, fin)

    def send_binary(self, data: Buffer, fin: bool = True) -> list[bytes]:
        """Start a binary message; ``fin=False`` makes it the first fragment.

        Returns:
            The bytes to write.
        """
        if data.__class__ is memoryview:
            data = _byte_view(data)
        if fin and self.state is OPEN and not self._sending and self.deflate is None:
            # Fast path for the common case: one whole message, no extension.
            if self.side is CLIENT:
                return [_encode_frame(0x82, data, self._next_mask())]
            if len(data) < _COPY_THRESHOLD:
                return [_encode_frame(0x82, data, None)]
        return self._send_data(_OP_BINARY, data, fin)

    def send_continuation(self, data: str | Buffer, fin: bool) -> list[bytes]:
        """Continue the fragmented message being sent.

        Returns:
            The bytes to write.
        """
        if isinstance(data, str):
            data = data.encode()
        elif data.__class__ is memoryview:
            data = _byte_view(data)
        return self._send_data(_OP_CONTINUATION, data, fin)

    def send_ping(self, data: Buffer = b"") -> list[bytes]:
        """Send a Ping; the matching :class:`Pong` event lists it as acknowledged.

        Raises:
            ValueError: If ``data`` exceeds 125 bytes or a ping with the same data
                is still waiting for its pong.
        """
        self._check_sendable("ping")
        data = bytes(data)
        if len(data) > 125:
            raise ValueError("ping data exceeds 125 bytes")
        if data in self._pings:
            raise ValueError("a ping with the same data is awaiting a pong")
        self._pings[data] = None
        return self._frame(_OP_PING, data)

    def send_pong(self, data: Buffer = b"") -> list[bytes]:
        """Send an unsolicited Pong (a one-way heartbeat, RFC 6455 5.5.3)."""
        self._check_sendable("pong")
        if len(data) > 125:
            raise ValueError("pong data exceeds 125 bytes")
        return self._frame(_OP_PONG, data)

    def send_close(self, code: int = 1000, reason: str = "") -> list[bytes]:
        """Start the closing handshake, or answer the peer's Close frame.

        Args:
            code: The close code; 1005 sends a Close frame without a payload.
            reason: The close reason, at most 123 bytes once UTF-8 encoded.

        Returns:
            The bytes to write.

        Raises:
            ValueError: If the code may not be sent or the reason is too long.
        """
        self._check_sendable("close")
        close = Close(code, reason)
        try:
            close.serialize()
        except ProtocolError as exc:
            raise ValueError(str(exc)) from None
        self._send_close(close)
        return self.data_to_send()

    def _send_close(self, close: Close) -> None:
        self._out += self._frame(_OP_CLOSE, close.serialize())
        self.close_sent = close
        self.state = transition(self.state, Transition.SEND_CLOSE)
        if self.state is CLOSED and self.close_rcvd_then_sent is None:
            self.close_rcvd_then_sent = False

    def fail(self, code: int = 1002, reason: str = "") -> list[bytes]:
        """Fail the connection (RFC 6455 section 7.1.7).

        Sends a Close frame with ``code`` unless one was sent already, stops
        reading and moves to ``CLOSED``: the TCP connection should close next.
        A ``reason`` longer than a Close frame carries is cut short, with
        ``...`` at the end.

        Returns:
            The bytes to write.
        """
        self._reading = False
        self._reset_message()
        if self.state in (OPEN, REMOTE_CLOSING):
            if len(reason.encode()) > 123:
                # RFC 6455 5.5: at most 125 bytes of payload, 2 of them the code.
                reason = reason.encode()[:120].decode(errors="ignore") + "..."
            close = Close(code, reason)
            self._out += self._frame(_OP_CLOSE, close.serialize())
            self.close_sent = close
        self.state = transition(self.state, Transition.FAIL)
        return self.data_to_send()

    # State.

    def close_expected(self) -> bool:
        """Tell whether the TCP connection should close soon.

        True once this side sent a Close frame or failed the connection: the I/O
        layer should then arm a timer and abort the connection if the peer does
        not finish the closing handshake in time.
        """
        return self.state is LOCAL_CLOSING or self.state is CLOSED

    @property
    def close_code(self) -> int | None:
        """The code of the Close frame received, 1006 if none; ``None`` while open."""
        if self.state is not CLOSED and not self.eof_rcvd:
            return None
        return 1006 if self.close_rcvd is None else self.close_rcvd.code

    @property
    def close_reason(self) -> str | None:
        """The reason of the Close frame received; ``None`` while open."""
        if self.state is not CLOSED and not self.eof_rcvd:
            return None
        return "" if self.close_rcvd is None else self.close_rcvd.reason

    def closed_error(self) -> ConnectionClosed:
        """Return the exception that describes how the connection closed."""
        rcvd, sent = self.close_rcvd, self.close_sent
        ok = (
            rcvd is not None
            and sent is not None
            and rcvd.code in OK_CLOSE_CODES
            and sent.code in OK_CLOSE_CODES
        )
        cls = ConnectionClosedOK if ok else ConnectionClosedError
        return cls(rcvd, sent, self.close_rcvd_then_sent)
