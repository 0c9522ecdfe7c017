"""Pure-Python twins of the functions in ``_speedups.c``.

Both implementations must behave identically; ``tests/protocol/test_speedups.py``
runs the same cases against each. :mod:`portside.protocol.speedups` picks one.
"""

from __future__ import annotations

from typing import Any, Union

Buffer = Union[bytes, bytearray, memoryview]

__all__ = [
    "ReaderBase",
    "apply_mask",
    "encode_frame",
    "encode_header",
    "new_buffer",
    "parse_frames",
]


def apply_mask(data: Buffer, mask: Buffer, /) -> bytes:
    """Return ``data`` XOR-ed with the 4-byte ``mask`` (RFC 6455 section 5.3).

    Args:
        data: The payload.
        mask: The masking key, exactly four bytes.
    """
    if len(mask) != 4:
        raise ValueError("mask must contain 4 bytes")
    if isinstance(data, memoryview):
        data = data.cast("B")  # count bytes, not items
    n = len(data)
    if n == 0:
        return b""
    # XOR the payload as one big integer against the key repeated to its length:
    # CPython does this a machine word at a time.
    key = (bytes(mask) * ((n + 3) >> 2))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")


def new_buffer(size: int, /) -> bytearray:
    """Return a bytearray of ``size`` bytes for the kernel to write into.

    The C twin skips zeroing the memory; callers only read what they wrote.
    """
    return bytearray(size)


def encode_header(first_byte: int, length: int, mask: bytes | None, /) -> bytes:
    """Return a frame header (RFC 6455 section 5.2).

    Args:
        first_byte: FIN, RSV1-3 and the opcode, already combined.
        length: The payload length.
        mask: The masking key, or ``None`` for an unmasked frame.
    """
    if mask is not None and len(mask) != 4:
        raise ValueError("mask must contain 4 bytes")
    bit = 0x80 if mask is not None else 0
    if length < 126:
        header = bytes((first_byte, bit | length))
    elif length < 65536:
        header = bytes((first_byte, bit | 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((first_byte, bit | 127)) + length.to_bytes(8, "big")
    return header if mask is None else header + mask


def encode_frame(first_byte: int, payload: Buffer, mask: bytes | None, /) -> bytes:
    """Return a whole frame: header, then the payload, masked when ``mask`` is set.

    Args:
        first_byte: FIN, RSV1-3 and the opcode, already combined.
        payload: The payload.
        mask: The masking key, or ``None`` for an unmasked frame.
    """
    if isinstance(payload, memoryview):
        payload = payload.cast("B")  # count bytes, not items
    header = encode_header(first_byte, len(payload), mask)
    if mask is None:
        return header + payload
    return header + apply_mask(payload, mask)


def parse_frames(
    buf: Buffer,
    pos: int,
    end: int,
    masked: bool,
    max_size: int,
    out: list[Any],
    /,
) -> int:
    """Consume the simple data frames at the start of ``buf[pos:end]``.

    A simple frame is complete, final (FIN set), has no RSV bit, is a text or
    binary frame, carries the mask bit ``masked`` requires, a payload of at most
    ``max_size`` bytes and, for text, valid UTF-8. For each one the message --
    ``str`` for text, ``bytes`` for binary -- is appended to ``out``.

    Parsing stops at the first frame that is not simple, so the general parser can
    handle it, including raising the right error.

    Returns:
        The position of the first byte not consumed.
    """
    if not 0 <= pos <= end <= len(buf):
        raise ValueError("pos and end must satisfy 0 <= pos <= end <= len(buf)")
    mask_bit = 0x80 if masked else 0
    while True:
        if end - pos < 2:
            return pos
        b0 = buf[pos]
        b1 = buf[pos + 1]
        # FIN set, no RSV bit, opcode 1 (text) or 2 (binary); mask bit as expected.
        if (b0 != 0x81 and b0 != 0x82) or (b1 & 0x80) != mask_bit:
            return pos
        length = b1 & 0x7F
        start = pos + 2
        if length == 126:
            if end - start < 2:
                return pos
            length = (buf[start] << 8) | buf[start + 1]
            start += 2
        elif length == 127:
            if end - start < 8:
                return pos
            length = int.from_bytes(buf[start : start + 8], "big")
            start += 8
        if length > max_size:
            return pos
        if masked:
            stop = start + 4 + length
            if stop > end:
                return pos
            payload = apply_mask(buf[start + 4 : stop], buf[start : start + 4])
        else:
            stop = start + length
            if stop > end:
                return pos
            payload = bytes(buf[start:stop])
        if b0 == 0x81:
            try:
                out.append(payload.decode())
            except UnicodeDecodeError:
                return pos
        else:
            out.append(payload)
        pos = stop


class ReaderBase:
    """The receive buffer and the fast path of :class:`~portside.protocol.reader.FrameReader`.

    Reads land in ``_view``, a view of the receive buffer ``_buf`` that
    connections share, after the ``_tail`` of a frame cut by the previous read;
    a frame larger than the buffer gets its own, ``_big``. ``buffer_updated``
    parses whole single-frame messages itself and hands everything else to the
    subclass: ``_continue(pos, end, events)`` for the rest of ``_buf``, and
    ``_continue_big(nbytes, events)`` when the read went to ``_big``.
    """

    __slots__ = (
        "_base",
        "_big",
        "_big_fill",
        "_buf",
        "_checked",
        "_masked",
        "_msg_opcode",
        "_reading",
        "_tail",
        "_view",
        "max_size",
    )

    _buf: bytearray
    _view: memoryview
    max_size: int
    _masked: bool
    _reading: bool
    _base: int
    _tail: bytes
    _big: bytearray | None
    _big_fill: int
    _msg_opcode: int
    _checked: int

    def get_buffer(self, sizehint: int = -1, /) -> memoryview:
        """Return a writable buffer for the next read (then call ``buffer_updated``)."""
        big = self._big
        if big is not None:
            return memoryview(big)[self._big_fill :]
        tail = self._tail
        if tail:
            base = len(tail)
            if base > len(self._buf):
                # The buffer is shared and exported: it cannot grow.
                raise BufferError("_tail is longer than _buf")
            # Through memoryviews: a bytearray slice would copy tail twice.
            memoryview(self._buf)[:base] = tail
            self._base = base
            return self._view[base:]
        self._base = 0
        return self._view

    def buffer_updated(self, nbytes: int, /) -> list[Any]:
        """Process ``nbytes`` written into the last buffer from ``get_buffer``.

        Returns:
            The events: messages (``str`` or ``bytes``) and control events.
        """
        events: list[Any] = []
        if not self._reading:
            self._tail = b""
            self._big = None
            return events
        if self._big is not None:
            return self._continue_big(nbytes, events)
        end = self._base + nbytes
        self._tail = b""
        pos = 0
        if not self._msg_opcode and not self._checked:
            # Whole single-frame messages, no extension involved.
            pos = parse_frames(self._buf, 0, end, self._masked, self.max_size, events)
            if pos == end:
                return events
        return self._continue(pos, end, events)

    def _continue(self, pos: int, end: int, events: list[Any], /) -> list[Any]:
        raise NotImplementedError  # pragma: no cover

    def _continue_big(self, nbytes: int, events: list[Any], /) -> list[Any]:
        raise NotImplementedError  # pragma: no cover
