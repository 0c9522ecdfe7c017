"""WebSocket frames as objects: :class:`Opcode` and :class:`Frame` (RFC 6455 section 5).

The connection itself never builds a :class:`Frame`: its reader parses bytes
straight into messages and its writers encode bytes straight from payloads,
which is what makes them fast. :class:`Frame` is for code that handles single
frames -- tests, tools, logs -- with the API websockets gives it:
:meth:`Frame.parse`, :meth:`Frame.serialize`, :meth:`Frame.check` and a readable
``str()``.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Union

from ..exceptions import PayloadTooBig, ProtocolError
from .close import Close
from .speedups import apply_mask, encode_frame

__all__ = ["Opcode", "Frame", "DATA_OPCODES", "CTRL_OPCODES"]

BytesLike = Union[bytes, bytearray, memoryview]


class Opcode(enum.IntEnum):
    """The opcodes of RFC 6455 section 5.2."""

    CONT = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


#: Opcodes of frames that carry messages.
DATA_OPCODES = (Opcode.CONT, Opcode.TEXT, Opcode.BINARY)
#: Opcodes of control frames (RFC 6455 section 5.5).
CTRL_OPCODES = (Opcode.CLOSE, Opcode.PING, Opcode.PONG)

# How much of a payload str() shows.
_SHOWN = 75


@dataclass
class Frame:
    """One WebSocket frame.

    The mask and the payload length are not fields: :meth:`serialize` and
    :meth:`parse` handle them.

    Attributes:
        opcode: The :class:`Opcode`.
        data: The payload (unmasked).
        fin: Whether this frame ends its message.
        rsv1: The RSV1 bit (set on the first frame of a compressed message).
        rsv2: The RSV2 bit.
        rsv3: The RSV3 bit.
    """

    opcode: Opcode
    data: BytesLike
    fin: bool = True
    rsv1: bool = False
    rsv2: bool = False
    rsv3: bool = False

    def __str__(self) -> str:
        """Describe the frame for logs: opcode, payload (cut if long), length."""
        data = bytes(self.data)
        if self.opcode is Opcode.CLOSE and data:
            try:
                shown = str(Close.parse(data))
            except ProtocolError:
                shown = data.hex(" ")
        else:
            try:
                text = data.decode()
            except UnicodeDecodeError:
                shown = data.hex(" ")
            else:
                shown = repr(text) if text.isprintable() or not text else data.hex(" ")
        if len(shown) > _SHOWN:
            shown = shown[: _SHOWN * 2 // 3] + "..." + shown[-_SHOWN // 3 :]
        length = f"{len(data)} byte{'' if len(data) == 1 else 's'}"
        details = length if self.fin else f"{length}, continued"
        return f"{self.opcode.name} {shown or repr('')} [{details}]"

    def check(self) -> None:
        """Check the rules that do not depend on extensions (RFC 6455 5.2, 5.5).

        Raises:
            ProtocolError: If a reserved bit other than RSV1 is set, or a control
                frame is fragmented or longer than 125 bytes.
        """
        if self.rsv2 or self.rsv3:
            raise ProtocolError("reserved bits must be 0")
        if self.opcode in CTRL_OPCODES:
            # RFC 6455 5.5: control frames are short and never fragmented.
            if len(self.data) > 125:
                raise ProtocolError("control frame too long")
            if not self.fin:
                raise ProtocolError("fragmented control frame")

    def serialize(self, *, mask: bool) -> bytes:
        """Return the frame as bytes; ``mask=True`` on the client side (RFC 6455 5.3).

        Raises:
            ProtocolError: If the frame breaks a rule :meth:`check` checks.
        """
        self.check()
        first = (
            (0x80 if self.fin else 0)
            | (0x40 if self.rsv1 else 0)
            | (0x20 if self.rsv2 else 0)
            | (0x10 if self.rsv3 else 0)
            | self.opcode
        )
        return encode_frame(first, self.data, os.urandom(4) if mask else None)

    @classmethod
    def parse(
        cls,
        read_exact: Callable[[int], Generator[None, None, bytes | bytearray]],
        *,
        mask: bool,
        max_size: int | None = None,
    ) -> Generator[None, None, Frame]:
        """Parse one frame, reading it with ``read_exact`` (a generator-based coroutine).

        Args:
            read_exact: ``yield from read_exact(n)`` returns exactly ``n`` bytes.
            mask: Whether the frame must be masked: ``True`` on the server side.
            max_size: The largest payload accepted; ``None`` for no limit.

        Raises:
            PayloadTooBig: If the payload is longer than ``max_size``.
            ProtocolError: If the frame is invalid.
        """
        head = yield from read_exact(2)
        first, second = head[0], head[1]
        try:
            opcode = Opcode(first & 0x0F)
        except ValueError:
            raise ProtocolError("invalid opcode") from None
        if bool(second & 0x80) != mask:
            raise ProtocolError("incorrect masking")
        length = second & 0x7F
        if length == 126:
            length = int.from_bytes((yield from read_exact(2)), "big")
        elif length == 127:
            length = int.from_bytes((yield from read_exact(8)), "big")
        if max_size is not None and length > max_size:
            raise PayloadTooBig(f"frame of {length} bytes exceeds max_size of {max_size}")
        key = (yield from read_exact(4)) if mask else None
        data = yield from read_exact(length)
        payload = bytes(data) if key is None else apply_mask(data, key)
        frame = cls(
            opcode,
            payload,
            fin=bool(first & 0x80),
            rsv1=bool(first & 0x40),
            rsv2=bool(first & 0x20),
            rsv3=bool(first & 0x10),
        )
        frame.check()
        return frame
