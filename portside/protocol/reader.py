"""Reading frames and messages from received bytes (RFC 6455 sections 5 and 6.2).

:class:`FrameReader` turns bytes into messages: it parses frame headers, enforces
the framing rules, unmasks payloads, reassembles fragments, decompresses
permessage-deflate messages and validates UTF-8, failing fast on the first
invalid byte even inside a frame that has not fully arrived.

Received bytes land in an :class:`Arena`, a buffer that every connection of one
thread can share: a read goes straight into it (``get_buffer`` /
``buffer_updated``, the shape of :class:`asyncio.BufferedProtocol`), complete
frames are parsed in place, and only the few bytes of a frame cut by the end of
the read are kept per connection. A frame too large for the arena gets a buffer
of its own, so the kernel writes its payload in place: of its whole size when
that is at most :data:`BIG_FIRST_MAX`, else of that size, doubled as the bytes
arrive, so that memory follows what the peer sent, not what its header
announced. A frame that memory cannot hold fails the connection with 1009. An
idle connection holds no receive buffer at all.
"""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING, Union

from ..exceptions import InvalidUTF8, PayloadTooBig, ProtocolError
from .events import Fragment
from .speedups import ReaderBase
from .speedups import apply_mask as _apply_mask
from .speedups import new_buffer as _new_buffer
from .speedups import parse_frames as _parse_frames

if TYPE_CHECKING:  # pragma: no cover
    from .deflate import PerMessageDeflate

__all__ = [
    "BIG_FIRST_MAX",
    "Arena",
    "FrameReader",
    "Event",
    "MAX_HEADER_SIZE",
    "MAX_SIZE_UNLIMITED",
    "READ_ROOM",
]

#: Stands for "no limit" in ``max_size`` computations.
MAX_SIZE_UNLIMITED = 2**63 - 1

_utf8_decoder = codecs.getincrementaldecoder("utf-8")

#: The largest frame header: 2 bytes, 8 of extended length, 4 of mask.
MAX_HEADER_SIZE = 14

#: Bytes a read may take beyond read_limit: room for the largest frame header, so
#: that a message of read_limit bytes arrives in one read, and some more, so that
#: this read does not fill the buffer. Event loops that read again after a read
#: that filled the buffer (uvloop) would otherwise make one more read, which
#: finds nothing, per message.
READ_ROOM = 64

# Extra room in the buffer of a frame larger than read_limit.
_BIG_SLACK = 4096

#: The largest buffer given to a frame when its header arrives: room for a frame
#: of the default ``max_size`` (1 MiB), its header and the slack above, so that
#: such frames are read in place, without a copy. A frame announcing more starts
#: with this much and its buffer doubles each time the bytes received fill it.
#: The doublings copy what arrived, less than the frame's size in all.
BIG_FIRST_MAX = 2**20 + MAX_HEADER_SIZE + _BIG_SLACK

Event = Union[str, bytes, object]


class Arena:
    """A receive buffer shared by the connections that one thread serves.

    Connections only use it between ``get_buffer`` and ``buffer_updated``, which
    an event loop calls back to back, so one arena per thread is safe.

    Args:
        size: The initial size in bytes.
    """

    __slots__ = ("buffer", "view")

    def __init__(self, size: int = 2**16) -> None:
        self.buffer = bytearray(size)
        self.view = memoryview(self.buffer)

    def reserve(self, size: int) -> None:
        """Grow the arena to at least ``size`` bytes."""
        if len(self.buffer) < size:
            self.buffer = bytearray(size)
            self.view = memoryview(self.buffer)


class FrameReader(ReaderBase):
    """Parses received bytes into messages; the receiving half of a connection.

    Subclasses implement :meth:`_on_control` to act on control frames.

    Data messages come out as ``str`` (text) or ``bytes`` (binary) objects in the
    event lists returned by :meth:`buffer_updated` and :meth:`receive_data`.
    When the peer breaks the protocol, the :class:`ProtocolError` is the last
    event and the reader ignores everything received after it.

    Attributes:
        emit_fragments: ``False`` (the default): a fragmented message comes out
            whole, once its last frame arrived. ``True``: each of its frames comes
            out as a :class:`~portside.protocol.events.Fragment` as soon as it is
            complete (text already validated and decoded), for I/O layers that
            stream messages to the application. Messages of one frame come out
            whole either way, and ``max_size`` limits the whole message either way.
            Set it before feeding data.
    """

    __slots__ = (
        "_big_stop",
        "_big_total",
        "_decoder",
        "_msg_compressed",
        "_msg_parts",
        "_msg_size",
        "_pending_total",
        "arena",
        "deflate",
        "emit_fragments",
        "read_limit",
    )

    def __init__(
        self,
        *,
        masked: bool,
        max_size: int | None,
        read_limit: int = 2**16,
        arena: Arena | None = None,
    ) -> None:
        if read_limit < 256:
            raise ValueError(f"read_limit must be at least 256 bytes, not {read_limit}")
        if max_size is not None and max_size < 0:
            raise ValueError(f"max_size must be >= 0 or None, not {max_size}")
        # A read takes read_limit bytes and room for a frame header, so that a
        # message of read_limit bytes arrives in one read, without a copy.
        size = read_limit + READ_ROOM
        self.arena = arena = Arena(size) if arena is None else arena
        arena.reserve(size)
        self.read_limit = read_limit
        self._buf = arena.buffer
        # Connections with the same read_limit share one view of the arena.
        self._view = arena.view if size == len(arena.buffer) else arena.view[:size]
        # No frame is longer than MAX_SIZE_UNLIMITED (RFC 6455 5.2), so larger
        # limits mean the same; the C ReaderBase stores max_size in 64 bits.
        self.max_size = (
            MAX_SIZE_UNLIMITED if max_size is None else min(max_size, MAX_SIZE_UNLIMITED)
        )
        self.deflate: PerMessageDeflate | None = None
        # RFC 6455 5.1: a server MUST close the connection upon receiving an
        # unmasked frame; a client MUST close it upon receiving a masked frame.
        self._masked = masked
        self._base = 0  # bytes of _tail copied to the arena by get_buffer
        self._tail = b""  # the start of a frame cut by the end of the last read
        self._big: bytearray | None = None  # a frame larger than read_limit
        self._big_fill = 0  # bytes of _big received
        self._big_total = 0  # size of the frame in _big
        self._big_stop = 0  # _big_total, or the size of _big if smaller
        self._pending_total = 0  # size of the cut frame, when its header is known
        self._msg_opcode = 0  # 0: no message in progress; 1: text; 2: binary
        self._msg_compressed = False
        self._msg_parts: list[bytes | str] = []
        self._msg_size = 0
        self._decoder: codecs.IncrementalDecoder | None = None
        self._checked = 0  # payload bytes of a cut text frame already validated
        self._reading = True
        self.emit_fragments = False

    # Buffer protocol: ReaderBase's get_buffer() and buffer_updated() handle
    # whole single-frame messages and call these for everything else.

    def _continue(self, pos: int, end: int, events: list[Event], /) -> list[Event]:
        return self._parse_rest(self._buf, pos, end, events)

    def _continue_big(self, nbytes: int, events: list[Event], /) -> list[Event]:
        big = self._big
        assert big is not None
        end = self._big_fill + nbytes
        if end >= self._big_stop:
            if end >= self._big_total:
                self._big = None
                return self._parse_rest(big, 0, end, events)
            # The bytes received filled the buffer: the next read needs room.
            try:
                big = self._grow_big(big, end)
            except MemoryError:
                self._stop(self._too_big_for_memory(self._big_total), events)
                return events
        self._big_fill = end
        if self._is_plain_text(big[0]):
            try:
                self._check_cut_text(big, 0, end)
            except ProtocolError as exc:
                self._stop(exc, events)
        return events

    def _grow_big(self, big: bytearray, fill: int) -> bytearray:
        """Replace the full buffer of a frame by one twice as large; return it.

        A new buffer, not ``big`` resized: the event loop may still hold a view
        of ``big``, which forbids resizing it.
        """
        total = self._big_total
        grown = _new_buffer(min(2 * len(big), total + _BIG_SLACK))
        memoryview(grown)[:fill] = memoryview(big)[:fill]
        self._big = grown
        self._big_stop = min(total, len(grown))
        return grown

    @staticmethod
    def _too_big_for_memory(total: int) -> PayloadTooBig:
        return PayloadTooBig(f"frame of {total} bytes does not fit in memory")

    def _parse_rest(self, data: bytearray, pos: int, end: int, events: list[Event]) -> list[Event]:
        try:
            pos = self._parse(data, pos, end, events)
        except ProtocolError as exc:
            self._stop(exc, events)
            return events
        except MemoryError:
            # A message that memory cannot hold once unmasked, inflated or
            # joined: too big, as for max_size.
            self._stop(PayloadTooBig("message does not fit in memory"), events)
            return events
        if pos < end and self._reading:
            total = self._pending_total
            if total > len(self._view):
                # Room for the frame and a little more: a read that does not
                # fill its buffer tells the event loop the socket is drained,
                # saving a read() that would only return EAGAIN. Not more than
                # BIG_FIRST_MAX (or twice what came, for a read_limit above
                # it) until the bytes arrive: the header may lie.
                size = total + _BIG_SLACK
                stop = total
                if size > BIG_FIRST_MAX:
                    size = min(size, max(BIG_FIRST_MAX, 2 * (end - pos)))
                    stop = min(total, size)
                try:
                    big = _new_buffer(size)
                except MemoryError:
                    self._stop(self._too_big_for_memory(total), events)
                    return events
                # Memoryview to memoryview: one copy. Assigning to a slice of
                # the bytearray itself would copy the data into a temporary first.
                memoryview(big)[: end - pos] = memoryview(data)[pos:end]
                self._big = big
                self._big_fill = end - pos
                self._big_total = total
                self._big_stop = stop
            else:
                self._tail = bytes(memoryview(data)[pos:end])
        return events

    def read_bytes(self, nbytes: int) -> bytes:
        """Return the ``nbytes`` of the last read as they are, unparsed.

        For the opening handshake, which comes before any frame: call it instead
        of :meth:`buffer_updated`.
        """
        return bytes(self._view[:nbytes])

    def receive_data(self, data: bytes) -> list[Event]:
        """Process received bytes (a convenience over the buffer protocol).

        Returns:
            The events, as :meth:`buffer_updated` does.
        """
        events: list[Event] = []
        view = memoryview(data)
        while view:
            buffer = self.get_buffer()
            size = min(len(buffer), len(view))
            buffer[:size] = view[:size]
            view = view[size:]
            events += self.buffer_updated(size)
        return events

    # Parsing.

    def _stop(self, exc: ProtocolError, events: list[Event]) -> None:
        self._reading = False
        self._tail = b""
        self._big = None
        self._reset_message()
        events.append(exc)

    def _reset_message(self) -> None:
        self._msg_opcode = 0
        self._msg_compressed = False
        self._msg_parts = []
        self._msg_size = 0
        self._decoder = None
        self._checked = 0

    def _on_control(self, opcode: int, payload: bytes, events: list[Event]) -> None:
        raise NotImplementedError  # pragma: no cover

    def _parse(self, buf: bytearray, pos: int, end: int, events: list[Event]) -> int:
        """Consume the complete frames in ``buf[pos:end]``; return where it stopped."""
        parse_frames = _parse_frames
        masked = self._masked
        max_size = self.max_size
        while True:
            if not self._msg_opcode and not self._checked:
                # Fast path: whole single-frame messages, no extension involved.
                pos = parse_frames(buf, pos, end, masked, max_size, events)
            if end - pos < 2:
                self._pending_total = 0
                return pos
            b0 = buf[pos]
            b1 = buf[pos + 1]
            fin = b0 & 0x80
            rsv = b0 & 0x70
            opcode = b0 & 0x0F
            length = b1 & 0x7F
            header = 2
            if length == 126:
                if end - pos < 4:
                    self._pending_total = 0
                    return pos
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                header = 4
            elif length == 127:
                if end - pos < 10:
                    self._pending_total = 0
                    return pos
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                header = 10
                if length >> 63:
                    # RFC 6455 5.2: the most significant bit MUST be 0.
                    raise ProtocolError("invalid frame length")
            self._check_header(fin, rsv, opcode, length, b1 & 0x80)
            if masked:
                header += 4
            total = header + length
            if end - pos < total:
                self._pending_total = total
                if self._is_plain_text(b0):
                    self._check_cut_text(buf, pos, end)
                return pos
            start = pos + header
            pos += total
            checked = self._checked
            if masked:
                mask = bytes(buf[start - 4 : start])
                if checked:
                    # Resume unmasking where streaming validation stopped.
                    shift = checked & 3
                    mask = mask[shift:] + mask[:shift]
                payload = _apply_mask(memoryview(buf)[start + checked : start + length], mask)
            else:
                payload = bytes(buf[start + checked : start + length])
            if opcode >= 8:
                self._on_control(opcode, payload, events)
                if not self._reading:
                    return end
                continue
            self._on_data(fin, rsv, opcode, payload, length, events)

    def _check_header(self, fin: int, rsv: int, opcode: int, length: int, mask: int) -> None:
        """Enforce the framing rules as soon as a frame header is known."""
        if opcode >= 8:
            if opcode > 10:
                # RFC 6455 5.2: unknown opcodes fail the connection.
                raise ProtocolError(f"unknown opcode {opcode:#x}")
            if rsv:
                # RFC 6455 5.2 and RFC 7692 6.1: no extension here uses RSV bits
                # on control frames.
                raise ProtocolError("reserved bits must be 0")
            if not fin:
                # RFC 6455 5.5: control frames MUST NOT be fragmented.
                raise ProtocolError("fragmented control frame")
            if length > 125:
                # RFC 6455 5.5: control frames carry at most 125 bytes.
                raise ProtocolError("control frame too long")
        else:
            if opcode > 2:
                raise ProtocolError(f"unknown opcode {opcode:#x}")
            if opcode == 0:
                if not self._msg_opcode:
                    # RFC 6455 5.4: a continuation frame needs a message to continue.
                    raise ProtocolError("unexpected continuation frame")
                if rsv:
                    # RFC 7692 6.1: RSV1 is set on the first frame only.
                    raise ProtocolError("reserved bits must be 0")
            else:
                if self._msg_opcode:
                    # RFC 6455 5.4: fragments of one message are not interleaved.
                    raise ProtocolError("expected a continuation frame")
                # RFC 6455 5.2: RSV bits MUST be 0 unless an extension defines
                # them; permessage-deflate defines RSV1 (RFC 7692 6).
                if rsv and (rsv != 0x40 or self.deflate is None):
                    raise ProtocolError("reserved bits must be 0")
            compressed = rsv or (opcode == 0 and self._msg_compressed)
            if compressed:
                # The payload inflates; its size is checked after decompression.
                # Deflate overhead is a few bytes per block, hence the margin.
                limit = self.max_size + (self.max_size >> 10) + 64
            else:
                limit = self.max_size - self._msg_size
            if length > limit:
                raise PayloadTooBig(
                    f"frame of {length} bytes exceeds max_size ({self.max_size} bytes)"
                )
        if bool(mask) != self._masked:
            # RFC 6455 5.1.
            raise ProtocolError("incorrect masking")

    def _on_data(
        self,
        fin: int,
        rsv: int,
        opcode: int,
        payload: bytes,
        length: int,
        events: list[Event],
    ) -> None:
        """Add a data frame to the message in progress; emit it when complete."""
        if opcode:
            self._msg_opcode = opcode
            self._msg_compressed = bool(rsv)
        if self._msg_compressed:
            assert self.deflate is not None
            budget = self.max_size - self._msg_size
            if self.max_size == MAX_SIZE_UNLIMITED:
                budget = -1
            payload = self.deflate.decompress(payload, bool(fin), budget)
            self._msg_size += len(payload)
        else:
            self._msg_size += length
        parts = self._msg_parts
        if self._msg_opcode == 1:
            decoder = self._decoder
            if fin and decoder is None:
                # A whole text message in one frame (or the last of compressed
                # frames that all inflated to nothing).
                try:
                    events.append(payload.decode())
                except UnicodeDecodeError:
                    raise InvalidUTF8("invalid UTF-8 in text message") from None
                self._reset_message()
                return
            if decoder is None:
                decoder = self._decoder = _utf8_decoder()
            try:
                # RFC 6455 8.1 and Autobahn's "fail fast": the incremental decoder
                # raises at the first byte that cannot start or continue UTF-8.
                piece = decoder.decode(payload, bool(fin))
            except UnicodeDecodeError:
                raise InvalidUTF8("invalid UTF-8 in text message") from None
            parts.append(piece)
            self._checked = 0
            if self.emit_fragments and not (opcode and fin):
                # One frame of a fragmented message, with the text decoded from
                # its first bytes while it was still arriving.
                events.append(Fragment("".join(parts), bool(fin)))  # type: ignore[arg-type]
                self._msg_parts = []
                if fin:
                    self._reset_message()
            elif fin:
                events.append("".join(parts))  # type: ignore[arg-type]
                self._reset_message()
        elif self.emit_fragments and not (opcode and fin):
            events.append(Fragment(payload, bool(fin)))
            if fin:
                self._reset_message()
        else:
            parts.append(payload)
            if fin:
                events.append(parts[0] if len(parts) == 1 else b"".join(parts))  # type: ignore[arg-type]
                self._reset_message()

    def _is_plain_text(self, b0: int) -> bool:
        """Tell whether a frame starting with ``b0`` carries uncompressed text."""
        opcode = b0 & 0x0F
        if opcode == 1:
            return not b0 & 0x40
        return opcode == 0 and self._msg_opcode == 1 and not self._msg_compressed

    def _check_cut_text(self, buf: bytearray, pos: int, end: int) -> None:
        """Validate the received part of a text frame that has not fully arrived.

        Autobahn's cases 6.4.3 and 6.4.4 expect the connection to fail as soon as
        an invalid byte arrives, not when the frame is complete. Compressed text
        is validated as each frame is decompressed.
        """
        length = buf[pos + 1] & 0x7F
        header = 2 if length < 126 else 4 if length == 126 else 10
        start = pos + header + 4 if self._masked else pos + header
        available = end - start
        checked = self._checked
        if available <= checked:
            return
        if self._masked:
            mask = bytes(buf[start - 4 : start])
            shift = checked & 3
            chunk = _apply_mask(memoryview(buf)[start + checked : end], mask[shift:] + mask[:shift])
        else:
            chunk = bytes(buf[start + checked : end])
        decoder = self._decoder
        if decoder is None:
            decoder = self._decoder = _utf8_decoder()
        try:
            piece = decoder.decode(chunk)
        except UnicodeDecodeError:
            raise InvalidUTF8("invalid UTF-8 in text message") from None
        if piece:
            self._msg_parts.append(piece)
        self._checked = available
