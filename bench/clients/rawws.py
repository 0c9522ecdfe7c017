"""A minimal WebSocket client protocol written for the harness.

It does exactly what the handshake and memory tests need and nothing more: the
opening handshake (optionally offering permessage-deflate), sending small masked
frames, reading unmasked server frames, and the closing handshake, in which it
waits for the server to close TCP first as RFC 6455 says it should. Being tiny,
it costs the client core little, and it can offer deflate, which picows cannot.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
import zlib
from dataclasses import dataclass
from typing import cast

__all__ = ["DEFLATE_OFFER", "Frame", "HandshakeError", "RawClient", "compress_message"]

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
DEFLATE_OFFER = "permessage-deflate; client_max_window_bits"

OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA
# Queued when the connection is lost, so that nobody waits for frames forever.
LOST = -1


class HandshakeError(Exception):
    """The server's answer to the opening handshake is not what was expected."""


@dataclass(frozen=True)
class Frame:
    """A frame received from the server."""

    fin: bool
    rsv1: bool
    opcode: int
    payload: bytes


def mask(payload: bytes, key: bytes) -> bytes:
    """Mask (or unmask) ``payload`` with the 4-byte ``key``."""
    n = len(payload)
    if n == 0:
        return b""
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")).to_bytes(
        n, "little"
    )


def encode_frame(opcode: int, payload: bytes, *, rsv1: bool = False) -> bytes:
    """A complete, masked client frame."""
    first = 0x80 | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", first, 0x80 | n)
    elif n < 1 << 16:
        header = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        header = struct.pack("!BBQ", first, 0x80 | 127, n)
    key = os.urandom(4)
    return header + key + mask(payload, key)


def compress_message(payload: bytes, window_bits: int) -> bytes:
    """``payload`` compressed as one permessage-deflate message (RFC 7692, 7.2.1)."""
    # zlib cannot produce raw deflate with an 8-bit window; 9 bits is what servers accept.
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -max(window_bits, 9))
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(b"\x00\x00\xff\xff")
    return data[:-4]


def decompress_message(payload: bytes, window_bits: int) -> bytes:
    """Inflate one permessage-deflate message."""
    return zlib.decompressobj(-window_bits).decompress(payload + b"\x00\x00\xff\xff")


def parse_extension(value: str) -> dict[str, str | None]:
    """The parameters of a single ``permessage-deflate`` extension header value."""
    name, *params = (part.strip() for part in value.split(";"))
    if name.lower() != "permessage-deflate":
        raise HandshakeError(f"unexpected extension {value!r}")
    parsed: dict[str, str | None] = {}
    for param in params:
        key, _, arg = param.partition("=")
        parsed[key.strip().lower()] = arg.strip().strip('"') or None
    return parsed


class RawClient(asyncio.Protocol):
    """One client connection; await :attr:`opened`, then send frames, then :meth:`close`."""

    def __init__(self, host: str, port: int, *, offer_deflate: bool = False) -> None:
        self.host_header = f"{host}:{port}"
        self.offer_deflate = offer_deflate
        self.key = base64.b64encode(os.urandom(16)).decode()
        loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()
        self.frames: asyncio.Queue[Frame] = asyncio.Queue()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.deflate: dict[str, str | None] | None = None

    # asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        lines = [
            "GET / HTTP/1.1",
            f"Host: {self.host_header}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {self.key}",
            "Sec-WebSocket-Version: 13",
        ]
        if self.offer_deflate:
            lines.append(f"Sec-WebSocket-Extensions: {DEFLATE_OFFER}")
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode())

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.opened.done():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            del self.buffer[: end + 4]
            try:
                self.check_response(head)
            except HandshakeError as exc:
                self.opened.set_exception(exc)
                assert self.transport is not None
                self.transport.abort()
                return
            self.opened.set_result(None)
        self.parse_frames()

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_exception(exc or ConnectionError("connection closed during handshake"))
        if not self.lost.done():
            self.lost.set_result(None)
            self.frames.put_nowait(Frame(True, False, LOST, b""))

    # the protocol

    def check_response(self, head: str) -> None:
        status, *header_lines = head.split("\r\n")
        if not status.startswith("HTTP/1.1 101"):
            raise HandshakeError(f"unexpected status line {status!r}")
        headers: dict[str, str] = {}
        for line in header_lines:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            headers[name] = (
                f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
            )
        digest = hashlib.sha1(self.key.encode() + GUID).digest()
        if headers.get("sec-websocket-accept") != base64.b64encode(digest).decode():
            raise HandshakeError("wrong or missing Sec-WebSocket-Accept")
        extensions = headers.get("sec-websocket-extensions")
        if self.offer_deflate:
            if extensions is None:
                raise HandshakeError("the server did not accept permessage-deflate")
            self.deflate = parse_extension(extensions)
        elif extensions is not None:
            raise HandshakeError(f"unrequested extensions {extensions!r}")

    def parse_frames(self) -> None:
        buffer = self.buffer
        while len(buffer) >= 2:
            first, second = buffer[0], buffer[1]
            length = second & 0x7F
            offset = 2
            if length == 126:
                if len(buffer) < 4:
                    return
                (length,) = struct.unpack_from("!H", buffer, 2)
                offset = 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                (length,) = struct.unpack_from("!Q", buffer, 2)
                offset = 10
            if len(buffer) < offset + length:
                return
            payload = bytes(buffer[offset : offset + length])
            del buffer[: offset + length]
            opcode = first & 0x0F
            if opcode == OP_PING:
                self.send(OP_PONG, payload)
                continue
            self.frames.put_nowait(Frame(bool(first & 0x80), bool(first & 0x40), opcode, payload))

    def send(self, opcode: int, payload: bytes, *, rsv1: bool = False) -> None:
        assert self.transport is not None
        self.transport.write(encode_frame(opcode, payload, rsv1=rsv1))

    def client_window_bits(self) -> int:
        """The window the client must compress with, as negotiated."""
        assert self.deflate is not None
        value = self.deflate.get("client_max_window_bits")
        return int(value) if value else 15

    def server_window_bits(self) -> int:
        assert self.deflate is not None
        value = self.deflate.get("server_max_window_bits")
        return int(value) if value else 15

    async def echo(self, text: str) -> None:
        """Send ``text`` (compressed if deflate was negotiated); check the echo."""
        payload = text.encode()
        if self.deflate is not None:
            self.send(OP_TEXT, compress_message(payload, self.client_window_bits()), rsv1=True)
        else:
            self.send(OP_TEXT, payload)
        frame = await self.frames.get()
        if frame.opcode == LOST:
            raise ConnectionError("connection lost before the echo")
        if frame.opcode != OP_TEXT or not frame.fin:
            raise AssertionError(f"unexpected frame {frame.opcode:#x}, expected a text message")
        echoed = frame.payload
        if frame.rsv1:
            echoed = decompress_message(echoed, self.server_window_bits())
        if echoed != payload:
            raise AssertionError("the echo differs from the message sent")

    async def close(self) -> None:
        """Closing handshake: send 1000, await the server's close frame, then its FIN."""
        self.send(OP_CLOSE, struct.pack("!H", 1000))
        while True:
            frame = await self.frames.get()
            if frame.opcode == OP_CLOSE:
                break
            if frame.opcode == LOST:
                raise ConnectionError("connection lost before the server's close frame")
        await self.lost

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
