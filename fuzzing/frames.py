"""The frame reader's twins, C and Python, fed the same bytes in the same reads.

One input makes a stream of frames -- masked or not, every opcode (the
reserved ones too), every length form, text whose UTF-8 characters the reads
cut at any point, compressed frames when permessage-deflate is on, bytes that
are no frame at all -- and a sequence of read sizes. The stream goes through
two copies of :class:`~portside.protocol.Protocol`, one on the C
``ReaderBase``, one on the pure-Python one, through ``get_buffer`` and
``buffer_updated`` as an event loop drives them. Both must give the same events
(messages, control frames, the same error) and end in the same state. The
module functions ``parse_frames`` and ``apply_mask`` of both are compared on
the same bytes too.

Run it with ``python -m fuzzing.run frames``; ``check(data)`` is the whole
check, which the test suite replays on saved inputs.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

from portside.exceptions import ProtocolError
from portside.protocol import _pyspeedups
from portside.protocol.close import Close
from portside.protocol.deflate import PerMessageDeflate
from portside.protocol.reader import Arena, FrameReader

from .source import Source

try:
    from portside.protocol import _speedups as _c_speedups  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the build
    _c_speedups = None

# Characters of 1 to 4 bytes in UTF-8, and bytes that are never valid in it.
TEXT_PIECES = ["a", "é", "☕", "𝄞", "\x00", "~"]
INVALID = [b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82"]


def on_base(cls: type, base: type, name: str) -> type:
    """``cls`` rebuilt on ``base`` (its slots anew, its methods shared)."""
    namespace = {
        key: value
        for key, value in vars(cls).items()
        if key not in cls.__slots__ and key not in ("__dict__", "__weakref__")  # type: ignore[attr-defined]
    }
    return type(name, (base,), namespace)


def _on_control(self: Any, opcode: int, payload: bytes, events: list[Any]) -> None:
    """Control frames as events; a Close frame is parsed, and stops the reader."""
    if opcode == 8:
        self._reading = False
        self._reset_message()
        try:
            events.append(Close.parse(payload))
        except ProtocolError as exc:
            events.append(exc)
    else:
        events.append(("control", opcode, payload))


def reader_classes() -> list[type]:
    """FrameReader on the pure-Python ReaderBase, then on the C one if built."""
    classes = []
    bases = [("Py", _pyspeedups.ReaderBase)]
    if _c_speedups is not None:
        bases.append(("C", _c_speedups.ReaderBase))
    for label, base in bases:
        reader = on_base(FrameReader, base, f"FrameReaderOn{label}")
        reader._on_control = _on_control  # type: ignore[attr-defined]
        classes.append(reader)
    return classes


READERS = reader_classes()


def deflate() -> PerMessageDeflate:
    return PerMessageDeflate(
        remote_no_context_takeover=False,
        local_no_context_takeover=False,
        remote_max_window_bits=15,
        local_max_window_bits=15,
    )


def payload_of(source: Source, opcode: int) -> bytes:
    kind = source.integer(4)
    if opcode == 8 and kind:
        code = source.choice([1000, 1001, 1002, 1005, 1006, 1015, 2999, 3000, 4999, 5000, 0])
        reason = "".join(
            TEXT_PIECES[source.integer(len(TEXT_PIECES))] for _ in range(source.integer(40))
        )
        return struct.pack("!H", code) + reason.encode()[: source.choice([123, 124, 200])]
    if kind == 1:  # text, maybe with an invalid sequence somewhere
        text = "".join(
            TEXT_PIECES[source.integer(len(TEXT_PIECES))] for _ in range(source.integer(300))
        )
        data = text.encode()
        if source.integer(4) == 0:
            cut = source.integer(len(data) + 1)
            data = data[:cut] + INVALID[source.integer(len(INVALID))] + data[cut:]
        return data
    if kind == 2:  # large: the 16-bit and 64-bit length forms, a buffer of its own
        size = source.choice([125, 126, 127, 255, 256, 1000, 65535, 65536, 70000])
        return bytes([source.byte()]) * size
    return source.take(source.integer(200))


def frame_of(source: Source, masked: bool, compress: Any) -> bytes:
    """One frame, mostly well formed, sometimes not."""
    opcode = source.choice([0, 1, 2, 1, 2, 8, 9, 10, 0, 3, 7, 11, 15])
    fin = source.integer(4) != 0
    rsv = source.choice([0, 0, 0, 0x40, 0x20, 0x10, 0x70])
    payload = payload_of(source, opcode)
    if rsv == 0x40 and compress is not None and opcode in (1, 2):
        payload = compress.compress(payload) + compress.flush(zlib.Z_SYNC_FLUSH)
        if fin and payload.endswith(b"\x00\x00\xff\xff"):
            payload = payload[:-4]
    length = len(payload)
    form = source.integer(8)
    if form == 0:  # the header lies about the length
        length = source.choice([0, 125, 126, 65535, 65536, 2**31, 2**62, 2**63 - 1, 2**63])
    first = (0x80 if fin else 0) | rsv | opcode
    mask_bit = 0x80 if masked != (form == 1) else 0  # form 1: the wrong masking
    if length < 126 and form != 2:
        header = struct.pack("!BB", first, mask_bit | length)
    elif length < 65536 and form != 3:
        header = struct.pack("!BBH", first, mask_bit | 126, length)
    else:  # forms 2 and 3: a longer length form than needed
        header = struct.pack("!BBQ", first, mask_bit | 127, length % 2**64)
    if not mask_bit:
        return header + payload
    key = source.take(4).ljust(4, b"\x00")
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    masked_payload = (
        bytes(a ^ b for a, b in zip(payload, repeated, strict=True))
        if len(payload) < 512
        else (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
            len(payload), "big"
        )
    )
    return header + key + masked_payload


def comparable(events: list[Any]) -> list[Any]:
    return [
        (type(e).__name__, str(e)) if isinstance(e, Exception) else (type(e).__name__, e)
        for e in events
    ]


def state(protocol: Any) -> tuple[Any, ...]:
    big = protocol._big
    return (
        protocol._reading,
        protocol._msg_opcode,
        protocol._checked,
        protocol._tail,
        None if big is None else len(big),
        protocol._big_fill,
        protocol._msg_size,
        list(protocol._msg_parts),
    )


def feed(
    cls: type, stream: bytes, reads: list[int], masked: bool, settings: tuple[Any, ...]
) -> tuple[Any, ...]:
    max_size, read_limit, with_deflate = settings
    protocol = cls(masked=masked, max_size=max_size, read_limit=read_limit, arena=Arena(0))
    if with_deflate:
        protocol.deflate = deflate()
    events: list[Any] = []
    pos = 0
    turn = 0
    while pos < len(stream):
        size = reads[turn % len(reads)]
        turn += 1
        buffer = protocol.get_buffer(-1)
        n = min(len(buffer), size, len(stream) - pos)
        buffer[:n] = stream[pos : pos + n]
        pos += n
        events += protocol.buffer_updated(n)
    return comparable(events), state(protocol), pos


def check_module_functions(stream: bytes, source: Source) -> None:
    if _c_speedups is None:
        return
    pos = source.integer(len(stream) + 1)
    end = pos + source.integer(len(stream) - pos + 1)
    masked = source.boolean()
    max_size = source.choice([0, 125, 1000, 2**20, 2**63 - 1])
    outs: list[list[Any]] = [[], []]
    results = []
    for module, out in zip((_pyspeedups, _c_speedups), outs, strict=True):
        try:
            results.append(
                ("ok", module.parse_frames(bytearray(stream), pos, end, masked, max_size, out))
            )
        except Exception as exc:
            results.append((type(exc).__name__, str(exc)))
    assert results[0] == results[1], results
    assert outs[0] == outs[1], outs
    key = source.take(4).ljust(4, b"\x00")
    window = stream[pos:end]
    assert _pyspeedups.apply_mask(window, key) == _c_speedups.apply_mask(window, key)


def check(data: bytes) -> None:
    """The whole check on one input: raises AssertionError on a divergence."""
    source = Source(data)
    masked = source.boolean()
    settings = (
        source.choice([None, 0, 125, 1000, 70000, 2**20]),  # type: ignore[list-item]
        source.choice([256, 1024, 65536]),
        source.integer(3) == 0,
    )
    compress = zlib.compressobj(6, zlib.DEFLATED, -15) if settings[2] else None
    stream = b""
    for _ in range(source.integer(9)):
        if source.integer(10) == 0:
            stream += source.take(source.integer(40))  # not a frame
        else:
            stream += frame_of(source, masked, compress)
    reads = [1 + source.integer(source.choice([1, 2, 7, 64, 300, 70000])) for _ in range(64)]
    check_module_functions(stream, source)
    if len(READERS) < 2:
        return
    results = [feed(cls, stream, reads, masked, settings) for cls in READERS]
    assert results[0] == results[1], (
        f"the twins diverge:\npython: {results[0]}\nC:      {results[1]}"
    )


def main() -> None:  # pragma: no cover - the fuzzer's entry point
    from .run import fuzz

    fuzz(check)
