"""Receiving: frames, fragments, limits and UTF-8, on plain bytes."""

from __future__ import annotations

import zlib

import pytest

from portside.exceptions import InvalidUTF8, PayloadTooBig, ProtocolError
from portside.protocol import CLIENT, SERVER, Arena, Close, Ping, Pong, Protocol
from portside.protocol import reader as reader_module
from portside.protocol.deflate import PerMessageDeflate
from portside.protocol.events import Fragment
from portside.protocol.reader import BIG_FIRST_MAX, READ_ROOM, Event
from tests.framing import client_frame, close_payload, server_frame

TEXT, BINARY, CONT, CLOSE, PING, PONG = 1, 2, 0, 8, 9, 10


def server(**kwargs: object) -> Protocol:
    return Protocol(SERVER, **kwargs)  # type: ignore[arg-type]


def client(**kwargs: object) -> Protocol:
    return Protocol(CLIENT, **kwargs)  # type: ignore[arg-type]


def feed_bytewise(protocol: Protocol, data: bytes) -> list[Event]:
    events: list[Event] = []
    for i in range(len(data)):
        events += protocol.receive_data(data[i : i + 1])
    return events


def error_of(events: list[Event]) -> ProtocolError:
    assert events, "expected an error event"
    error = events[-1]
    assert isinstance(error, ProtocolError), events
    return error


# Whole messages.


@pytest.mark.parametrize(
    "size", [0, 1, 125, 126, 127, 1000, 65535, 65536, 70000], ids=lambda n: f"{n}B"
)
def test_binary_message_every_length_encoding(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    assert server(max_size=None).receive_data(client_frame(BINARY, payload)) == [payload]
    assert client(max_size=None).receive_data(server_frame(BINARY, payload)) == [payload]


def test_text_message() -> None:
    text = "café ☕ 𝄞"
    assert server().receive_data(client_frame(TEXT, text.encode())) == [text]


def test_several_messages_in_one_read() -> None:
    data = client_frame(TEXT, b"a") + client_frame(BINARY, b"b") + client_frame(TEXT, b"")
    assert server().receive_data(data) == ["a", b"b", ""]


def test_every_cut_point_gives_the_same_messages() -> None:
    data = (
        client_frame(TEXT, "héllo".encode())
        + client_frame(BINARY, bytes(300))
        + client_frame(TEXT, b"frag ", fin=False)
        + client_frame(PING, b"ping")
        + client_frame(CONT, "ment ☕".encode())
    )
    expected: list[Event] = ["héllo", bytes(300), Ping(b"ping"), "frag ment ☕"]
    assert server().receive_data(data) == expected
    assert feed_bytewise(server(), data) == expected
    for cut in range(1, len(data)):
        protocol = server()
        assert protocol.receive_data(data[:cut]) + protocol.receive_data(data[cut:]) == expected


def test_fragmented_binary_message() -> None:
    data = (
        client_frame(BINARY, b"ab", fin=False)
        + client_frame(CONT, b"", fin=False)
        + client_frame(CONT, b"cd")
    )
    assert server().receive_data(data) == [b"abcd"]


def test_message_of_many_fragments_has_no_fragment_cap() -> None:
    # Autobahn 9.3/9.4 send up to 4 MiB in 64-byte fragments: 65536 frames.
    count = 10_000
    data = client_frame(BINARY, b"x", fin=False)
    data += client_frame(CONT, b"x", fin=False) * (count - 2)
    data += client_frame(CONT, b"x")
    assert server(max_size=None).receive_data(data) == [b"x" * count]


def test_unmasked_server_frames_on_the_client() -> None:
    assert client().receive_data(server_frame(TEXT, b"hi")) == ["hi"]


# Control frames.


def test_ping_is_answered_with_a_pong() -> None:
    protocol = server()
    assert protocol.receive_data(client_frame(PING, b"data")) == [Ping(b"data")]
    assert protocol.data_to_send() == [server_frame(PONG, b"data")]
    assert protocol.data_to_send() == []


def test_pong_acknowledges_pings_up_to_its_own() -> None:
    protocol = client()
    for data in (b"1", b"2", b"3"):
        protocol.send_ping(data)
    assert protocol.receive_data(server_frame(PONG, b"2")) == [Pong(b"2", (b"1", b"2"))]
    assert protocol.receive_data(server_frame(PONG, b"x")) == [Pong(b"x", ())]
    assert protocol.receive_data(server_frame(PONG, b"3")) == [Pong(b"3", (b"3",))]


def test_close_frame_is_echoed_and_reading_stops() -> None:
    protocol = server()
    data = client_frame(CLOSE, close_payload(1001, "bye")) + client_frame(TEXT, b"late")
    assert protocol.receive_data(data) == [Close(1001, "bye")]
    assert protocol.data_to_send() == [server_frame(CLOSE, close_payload(1001))]
    assert protocol.receive_data(client_frame(TEXT, b"later")) == []


def test_close_frame_without_code() -> None:
    protocol = server()
    assert protocol.receive_data(client_frame(CLOSE)) == [Close(1005)]
    assert protocol.data_to_send() == [server_frame(CLOSE)]


def test_close_interrupts_a_fragmented_message() -> None:
    # Autobahn 7.1.5: fragment, Close, fragment: clean close with 1000.
    protocol = server()
    data = (
        client_frame(TEXT, b"frag1", fin=False)
        + client_frame(CLOSE, close_payload(1000))
        + client_frame(CONT, b"frag2")
    )
    assert protocol.receive_data(data) == [Close(1000)]
    assert protocol.data_to_send() == [server_frame(CLOSE, close_payload(1000))]


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"\x03", 1002),
        (close_payload(999), 1002),
        (close_payload(1004), 1002),
        (close_payload(1005), 1002),
        (close_payload(1006), 1002),
        (close_payload(1015), 1002),
        (close_payload(1016), 1002),
        (close_payload(2999), 1002),
        (close_payload(5000), 1002),
        (close_payload(1000) + b"\xff", 1007),
    ],
)
def test_invalid_close_frames(payload: bytes, code: int) -> None:
    assert error_of(server().receive_data(client_frame(CLOSE, payload))).code == code


@pytest.mark.parametrize(
    "code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999]
)
def test_valid_close_codes(code: int) -> None:
    assert server().receive_data(client_frame(CLOSE, close_payload(code))) == [Close(code)]


# Framing errors (RFC 6455 section 5).


@pytest.mark.parametrize(
    "data",
    [
        client_frame(TEXT, b"x", rsv=1),
        client_frame(TEXT, b"x", rsv=2),
        client_frame(TEXT, b"x", rsv=4),
        client_frame(PING, b"x", rsv=4),
        *(client_frame(op, b"x") for op in (3, 4, 5, 6, 7, 11, 12, 13, 14, 15)),
        client_frame(PING, b"x", fin=False),
        client_frame(PING, bytes(126)),
        client_frame(CONT, b"x"),
        client_frame(TEXT, b"a", fin=False) + client_frame(BINARY, b"b"),
        client_frame(TEXT, b"x", mask=None),
        client_frame(TEXT, b"x", length=2**63),
    ],
    ids=[
        "rsv1",
        "rsv2",
        "rsv3",
        "rsv-control",
        *(f"opcode-{op}" for op in (3, 4, 5, 6, 7, 11, 12, 13, 14, 15)),
        "fragmented-ping",
        "long-ping",
        "lonely-continuation",
        "interleaved-message",
        "unmasked-to-server",
        "64-bit-length-msb",
    ],
)
def test_framing_errors_fail_with_1002(data: bytes) -> None:
    protocol = server()
    events = protocol.receive_data(data + client_frame(PING, b"after"))
    assert error_of(events).code == 1002
    assert not any(isinstance(e, Ping) for e in events), "parsing must stop at the error"
    assert protocol.data_to_send() == []


def test_masked_frame_to_client_fails() -> None:
    assert error_of(client().receive_data(client_frame(TEXT, b"x"))).code == 1002


def test_messages_before_an_error_come_first() -> None:
    # Autobahn 3.2: a valid message, a frame with RSV set, then a ping.
    data = client_frame(TEXT, b"Hello") + client_frame(TEXT, b"x", rsv=2) + client_frame(PING)
    events = server().receive_data(data)
    assert events[0] == "Hello"
    assert error_of(events).code == 1002
    assert len(events) == 2


def test_nothing_is_read_after_an_error() -> None:
    protocol = server()
    error_of(protocol.receive_data(client_frame(7)))
    assert protocol.receive_data(client_frame(TEXT, b"ignored")) == []


def test_error_is_raised_from_the_header_alone() -> None:
    # Fail fast: no need to wait for a payload that breaks the rules.
    frame = client_frame(PING, bytes(200))
    assert error_of(server().receive_data(frame[:4])).code == 1002


# Limits.


def test_frame_larger_than_max_size_fails_before_its_payload() -> None:
    protocol = server(max_size=1000)
    events = protocol.receive_data(client_frame(BINARY, bytes(1001))[:8])
    assert isinstance(error_of(events), PayloadTooBig)
    assert error_of(events).code == 1009


def test_fragmented_message_larger_than_max_size_fails() -> None:
    protocol = server(max_size=1000)
    data = client_frame(BINARY, bytes(600), fin=False) + client_frame(CONT, bytes(600))
    assert error_of(protocol.receive_data(data)).code == 1009


def test_message_of_exactly_max_size_is_accepted() -> None:
    protocol = server(max_size=1000)
    data = client_frame(BINARY, bytes(500), fin=False) + client_frame(CONT, bytes(500))
    assert protocol.receive_data(data) == [bytes(1000)]


def test_frame_larger_than_read_limit_gets_its_own_buffer() -> None:
    arena = Arena(256)
    protocol = server(read_limit=256, arena=arena, max_size=None)
    payload = bytes(range(256)) * 40
    data = client_frame(BINARY, payload) + client_frame(TEXT, b"next")
    events: list[Event] = []
    view = memoryview(data)
    while view:
        buffer = protocol.get_buffer()
        assert len(buffer) <= max(256, len(payload) + 14 + 4096)
        n = min(len(buffer), len(view), 100)
        buffer[:n] = view[:n]
        view = view[n:]
        events += protocol.buffer_updated(n)
    assert events == [payload, "next"]
    assert len(arena.buffer) == 256 + READ_ROOM, "the shared arena must not grow for one big frame"


# A frame's announced length is a claim: memory follows the bytes that came.


def announce(length: int, payload: bytes = b"", opcode: int = BINARY) -> bytes:
    """The header of a masked frame announcing ``length`` bytes, then ``payload``."""
    return client_frame(opcode, payload, length=length)[: 14 + len(payload)]


@pytest.mark.parametrize("length", [3 * 2**30, 2**62, 2**63 - 1], ids=["3GiB", "2^62", "2^63-1"])
def test_announced_length_is_not_allocated_up_front(length: int) -> None:
    protocol = server(max_size=None)
    assert protocol.receive_data(announce(length, b"abc")) == []
    assert protocol._big is not None, "the frame is larger than read_limit: it gets its own buffer"
    # Sizes only in assertions: pytest would print a buffer of gigabytes.
    size = len(protocol._big)
    assert size <= BIG_FIRST_MAX, f"{size} bytes allocated for 3 bytes received"
    assert protocol._big_fill == 14 + 3  # the header, then the payload


def test_frame_up_to_big_first_max_gets_its_whole_buffer_at_once() -> None:
    # The frames of the default max_size are read in place, without a copy.
    protocol = server(max_size=None)
    length = 2**20
    assert protocol.receive_data(announce(length, b"abc")) == []
    big = protocol._big
    assert big is not None
    size = len(big)
    assert size > length + 14
    for _ in range(3):
        buffer = protocol.get_buffer()
        buffer[:1000] = bytes(1000)
        assert protocol.buffer_updated(1000) == []
        assert protocol._big is big, "no copy"


@pytest.mark.parametrize("masked", [True, False], ids=["masked", "unmasked"])
@pytest.mark.parametrize("chunk", [65_536, 1_000_003], ids=["64KiB-reads", "1MB-reads"])
def test_buffer_of_a_large_frame_grows_as_its_bytes_arrive(masked: bool, chunk: int) -> None:
    protocol = server(max_size=None) if masked else client(max_size=None)
    make = client_frame if masked else server_frame
    payload = bytes(range(251)) * 40_000  # 10 MB: three doublings past BIG_FIRST_MAX
    data = make(BINARY, payload) + make(TEXT, b"next")
    events: list[Event] = []
    received = 0
    sizes = set()
    view = memoryview(data)
    while view:
        buffer = protocol.get_buffer()
        n = min(len(buffer), len(view), chunk)
        buffer[:n] = view[:n]
        view = view[n:]
        received += n
        events += protocol.buffer_updated(n)
        if protocol._big is not None:
            size = len(protocol._big)
            sizes.add(size)
            # Never more than twice what came, past the first allocation.
            assert size <= max(BIG_FIRST_MAX, 2 * received)
    assert events == [payload, "next"]
    assert len(sizes) >= 4, sorted(sizes)


def test_text_in_a_growing_buffer_is_validated_as_it_arrives() -> None:
    protocol = server(max_size=None)
    payload = "é".encode() * 2**20 + b"\xff" + bytes(2**20)  # invalid after 2 MiB
    frame = client_frame(TEXT, payload)
    events: list[Event] = []
    fed = 0
    while not events:
        events = protocol.receive_data(frame[fed : fed + 2**16])
        fed += 2**16
    assert error_of(events).code == 1007
    assert fed < 2**21 + 2**17, "failed fast, not at the end of the frame"
    assert protocol._big is None


def test_text_reassembled_across_growth() -> None:
    protocol = server(max_size=None)
    text = "é☕x" * 700_000  # 4.2 MB of UTF-8, cut inside characters
    frame = client_frame(TEXT, text.encode())
    events: list[Event] = []
    for start in range(0, len(frame), 99_999):
        events += protocol.receive_data(frame[start : start + 99_999])
    assert events == [text]


def test_read_limit_above_big_first_max() -> None:
    # A read may bring more than BIG_FIRST_MAX: the frame's buffer holds it.
    protocol = server(max_size=None, read_limit=3 * 2**20)
    payload = bytes(range(256)) * 2**15  # 8 MiB
    frame = client_frame(BINARY, payload)
    events: list[Event] = []
    for start in range(0, len(frame), 3 * 2**20):
        events += protocol.receive_data(frame[start : start + 3 * 2**20])
    assert events == [payload]


class OutOfMemory:
    """A stand-in for new_buffer that fails from ``limit`` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sizes: list[int] = []

    def __call__(self, size: int, /) -> bytearray:
        self.sizes.append(size)
        if size >= self.limit:
            raise MemoryError
        return bytearray(size)


def test_frame_that_memory_cannot_hold_fails_with_1009(monkeypatch: pytest.MonkeyPatch) -> None:
    allocator = OutOfMemory(8 * 2**20)
    monkeypatch.setattr(reader_module, "_new_buffer", allocator)
    protocol = server(max_size=None)
    frame = announce(2**62)
    events: list[Event] = protocol.receive_data(frame)
    chunk = bytes(2**20)
    while not events:
        events = protocol.receive_data(chunk)
    error = error_of(events)
    assert isinstance(error, PayloadTooBig)
    assert error.code == 1009
    assert str(error) == f"frame of {2**62 + 14} bytes does not fit in memory"
    assert allocator.sizes[-1] >= 8 * 2**20
    # The reader stopped and let go of the frame's buffer.
    assert protocol._big is None
    assert protocol.receive_data(chunk) == []


def test_first_buffer_that_memory_cannot_hold_fails_with_1009(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(reader_module, "_new_buffer", OutOfMemory(0))
    protocol = server(max_size=None)
    error = error_of(protocol.receive_data(announce(2**40, b"x")))
    assert (error.code, str(error)) == (1009, f"frame of {2**40 + 14} bytes does not fit in memory")


def test_message_that_memory_cannot_hold_fails_with_1009(monkeypatch: pytest.MonkeyPatch) -> None:
    # The frame fits, the message it completes does not: joined, it is too big.
    def join_fails(self: Protocol, *args: object) -> None:
        raise MemoryError

    monkeypatch.setattr(Protocol, "_on_data", join_fails)
    protocol = server(max_size=None)
    data = client_frame(BINARY, b"ab", fin=False) + client_frame(CONT, b"cd")
    error = error_of(protocol.receive_data(data))
    assert (error.code, str(error)) == (1009, "message does not fit in memory")


def test_get_buffer_continues_after_a_cut_frame() -> None:
    protocol = server()
    frame = client_frame(TEXT, b"hello")
    assert protocol.receive_data(frame[:3]) == []
    buffer = protocol.get_buffer()
    buffer[: len(frame) - 3] = frame[3:]
    assert protocol.buffer_updated(len(frame) - 3) == ["hello"]


def test_read_limit_too_small() -> None:
    with pytest.raises(ValueError, match="read_limit"):
        server(read_limit=10)


def test_max_size_negative() -> None:
    with pytest.raises(ValueError, match="max_size"):
        server(max_size=-1)


# UTF-8 (RFC 6455 8.1), failing fast.


def test_invalid_utf8_text_fails_with_1007() -> None:
    events = server().receive_data(client_frame(TEXT, b"\xce\xba\xff"))
    assert isinstance(error_of(events), InvalidUTF8)
    assert error_of(events).code == 1007


def test_invalid_utf8_in_a_fragment_fails_before_the_message_ends() -> None:
    # Autobahn 6.4.1: the 2nd fragment makes the text invalid; fail right there.
    protocol = server()
    valid = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"
    assert protocol.receive_data(client_frame(TEXT, valid, fin=False)) == []
    events = protocol.receive_data(client_frame(CONT, b"\xf4\x90\x80\x80", fin=False))
    assert error_of(events).code == 1007


def test_invalid_utf8_fails_inside_a_frame_that_has_not_fully_arrived() -> None:
    # Autobahn 6.4.3 and 6.4.4: one frame, sent in chunks.
    payload = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5" + b"\xf4\x90\x80\x80edited"
    frame = client_frame(TEXT, payload)
    protocol = server()
    head = len(frame) - len(payload)
    assert protocol.receive_data(frame[: head + 12]) == []
    assert error_of(protocol.receive_data(frame[head + 12 : head + 13])).code == 1007


def test_text_split_inside_a_character_is_reassembled() -> None:
    text = "☕" * 100
    frame = client_frame(TEXT, text.encode())
    assert feed_bytewise(server(), frame) == [text]


def test_cut_text_frame_in_its_own_buffer_is_validated_as_it_arrives() -> None:
    protocol = server(read_limit=256, max_size=None)
    payload = "é".encode() * 200 + b"\xff" + bytes(1000)
    frame = client_frame(TEXT, payload)
    assert protocol.receive_data(frame[:300]) == []
    assert error_of(protocol.receive_data(frame[300:500])).code == 1007


def test_cut_text_frame_in_its_own_buffer_is_reassembled() -> None:
    protocol = server(read_limit=256, max_size=None)
    text = "é☕" * 500
    frame = client_frame(TEXT, text.encode())
    events: list[Event] = []
    for start in range(0, len(frame), 97):
        events += protocol.receive_data(frame[start : start + 97])
    assert events == [text]


def test_fragmented_text_with_a_cut_fragment() -> None:
    protocol = server()
    data = client_frame(TEXT, b"ab", fin=False) + client_frame(CONT, "çd€".encode())
    assert feed_bytewise(protocol, data) == ["abçd€"]


# permessage-deflate (RFC 7692).


def deflate_codec(**kwargs: object) -> PerMessageDeflate:
    options: dict[str, object] = {
        "remote_no_context_takeover": False,
        "local_no_context_takeover": False,
        "remote_max_window_bits": 15,
        "local_max_window_bits": 15,
    }
    options.update(kwargs)
    return PerMessageDeflate(**options)  # type: ignore[arg-type]


def compress(data: bytes, wbits: int = 15) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def test_compressed_message() -> None:
    protocol = server()
    protocol.deflate = deflate_codec()
    text = "compress me " * 100
    assert protocol.receive_data(client_frame(TEXT, compress(text.encode()), rsv=4)) == [text]


def test_compressed_fragmented_message() -> None:
    protocol = server()
    protocol.deflate = deflate_codec()
    data = compress(b"binary data " * 50)
    frames = (
        client_frame(BINARY, data[:10], rsv=4, fin=False)
        + client_frame(CONT, data[10:20], fin=False)
        + client_frame(CONT, data[20:])
    )
    assert protocol.receive_data(frames) == [b"binary data " * 50]


def test_uncompressed_message_with_deflate_negotiated() -> None:
    protocol = server()
    protocol.deflate = deflate_codec()
    assert protocol.receive_data(client_frame(TEXT, b"plain")) == ["plain"]


def test_rsv1_on_continuation_fails() -> None:
    protocol = server()
    protocol.deflate = deflate_codec()
    data = client_frame(TEXT, compress(b"a"), rsv=4, fin=False) + client_frame(CONT, b"", rsv=4)
    assert error_of(protocol.receive_data(data)).code == 1002


def test_decompression_bomb_fails_with_1009() -> None:
    protocol = server(max_size=10_000)
    protocol.deflate = deflate_codec()
    bomb = compress(bytes(10_000_000))
    assert len(bomb) < 20_000
    assert error_of(protocol.receive_data(client_frame(BINARY, bomb, rsv=4))).code == 1009


def test_decompressed_size_just_under_max_size() -> None:
    protocol = server(max_size=10_000)
    protocol.deflate = deflate_codec()
    assert protocol.receive_data(client_frame(BINARY, compress(bytes(10_000)), rsv=4)) == [
        bytes(10_000)
    ]


def test_corrupt_deflate_data_fails() -> None:
    protocol = server()
    protocol.deflate = deflate_codec()
    assert (
        error_of(protocol.receive_data(client_frame(BINARY, b"\xff\xff\xff", rsv=4))).code == 1007
    )


def test_compressed_invalid_utf8_fails_with_1007() -> None:
    protocol = server()
    protocol.deflate = deflate_codec()
    frame = client_frame(TEXT, compress(b"ok \xff not ok"), rsv=4)
    assert error_of(protocol.receive_data(frame)).code == 1007


def test_context_takeover_across_messages() -> None:
    protocol = server()
    protocol.deflate = deflate_codec()
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    messages = []
    for text in ("hello world", "hello world", "hello again"):
        out = compressor.compress(text.encode()) + compressor.flush(zlib.Z_SYNC_FLUSH)
        messages.append(client_frame(TEXT, out[:-4], rsv=4))
    assert protocol.receive_data(b"".join(messages)) == [
        "hello world",
        "hello world",
        "hello again",
    ]


def test_compressed_text_cut_in_transit() -> None:
    protocol = server()
    protocol.deflate = deflate_codec()
    text = "é" * 1000
    frame = client_frame(TEXT, compress(text.encode()), rsv=4)
    assert feed_bytewise(protocol, frame) == [text]


# Fragments, one event per frame (emit_fragments).


def streaming(**kwargs: object) -> Protocol:
    protocol = server(**kwargs)
    protocol.emit_fragments = True
    return protocol


def test_fragments_of_a_binary_message_come_one_per_frame() -> None:
    data = (
        client_frame(BINARY, b"ab", fin=False)
        + client_frame(CONT, b"", fin=False)
        + client_frame(CONT, b"cd")
        + client_frame(BINARY, b"whole")
    )
    assert streaming().receive_data(data) == [
        Fragment(b"ab", False),
        Fragment(b"", False),
        Fragment(b"cd", True),
        b"whole",
    ]


def test_fragments_come_as_each_frame_completes() -> None:
    protocol = streaming()
    assert protocol.receive_data(client_frame(TEXT, b"ab", fin=False)) == [Fragment("ab", False)]
    assert protocol.receive_data(client_frame(PING, b"p")) == [Ping(b"p")]
    assert protocol.receive_data(client_frame(CONT, b"cd")) == [Fragment("cd", True)]
    assert protocol.receive_data(client_frame(TEXT, b"e")) == ["e"]


def test_text_fragments_keep_a_cut_character_for_the_frame_that_completes_it() -> None:
    euro = "€".encode()
    data = (
        client_frame(TEXT, b"a" + euro[:1], fin=False)
        + client_frame(CONT, euro[1:], fin=False)
        + client_frame(CONT, b"b")
    )
    for events in (streaming().receive_data(data), feed_bytewise(streaming(), data)):
        assert events == [Fragment("a", False), Fragment("€", False), Fragment("b", True)]


def test_text_fragment_validated_before_its_frame_ends() -> None:
    protocol = streaming()
    frame = client_frame(TEXT, b"ok", fin=False) + client_frame(CONT, b"xx\xffyy")
    events = protocol.receive_data(frame[:-2])
    assert events[0] == Fragment("ok", False)
    assert error_of(events).code == 1007


def test_compressed_fragments() -> None:
    protocol = streaming()
    protocol.deflate = deflate_codec()
    text = "streamed " * 60
    data = compress(text.encode())
    frames = (
        client_frame(TEXT, data[:10], rsv=4, fin=False)
        + client_frame(CONT, data[10:], fin=False)
        + client_frame(CONT, b"")
    )
    events = protocol.receive_data(frames)
    assert all(isinstance(event, Fragment) for event in events)
    assert [event.fin for event in events] == [False, False, True]  # type: ignore[union-attr]
    assert "".join(event.data for event in events) == text  # type: ignore[union-attr]


def test_fragments_count_against_max_size_as_a_whole() -> None:
    protocol = streaming(max_size=5)
    events = protocol.receive_data(
        client_frame(BINARY, b"abc", fin=False) + client_frame(CONT, b"def")
    )
    assert events[0] == Fragment(b"abc", False)
    assert error_of(events).code == 1009


def test_close_frame_ends_a_fragmented_message_in_progress() -> None:
    protocol = streaming()
    events = protocol.receive_data(
        client_frame(BINARY, b"ab", fin=False) + client_frame(CLOSE, close_payload(1000))
    )
    assert events == [Fragment(b"ab", False), Close(1000)]
