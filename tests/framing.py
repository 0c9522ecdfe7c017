"""Build WebSocket frames and requests by hand for tests, independently of portside's encoder."""

from __future__ import annotations

import base64
import hashlib
import os
import struct


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = b"\x01\x02\x03\x04",
    length: int | None = None,
) -> bytes:
    """Return one frame. ``mask=None`` sends it unmasked (as a server does)."""
    n = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if mask is not None else 0
    if n < 126:
        header = struct.pack("!BB", first, mask_bit | n)
    elif n < 65536:
        header = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, n)
    if mask is None:
        return header + payload
    return header + mask + xor(payload, mask)


def xor(data: bytes, mask: bytes) -> bytes:
    """``data`` XOR-ed with the 4-byte ``mask`` repeated (RFC 6455 5.3), as big integers."""
    n = len(data)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def client_frame(opcode: int, payload: bytes = b"", **kwargs: object) -> bytes:
    """A masked frame, as a client sends."""
    return frame(opcode, payload, **kwargs)  # type: ignore[arg-type]


def server_frame(opcode: int, payload: bytes = b"", **kwargs: object) -> bytes:
    """An unmasked frame, as a server sends."""
    return frame(opcode, payload, mask=None, **kwargs)  # type: ignore[arg-type]


def close_payload(code: int, reason: str = "") -> bytes:
    return struct.pack("!H", code) + reason.encode()


def unmask_frames(data: bytes) -> list[tuple[int, int, bytes]]:
    """Parse frames (masked or not); return ``(first_byte, opcode, payload)``."""
    frames = []
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        n = b1 & 0x7F
        pos += 2
        if n == 126:
            (n,) = struct.unpack("!H", data[pos : pos + 2])
            pos += 2
        elif n == 127:
            (n,) = struct.unpack("!Q", data[pos : pos + 8])
            pos += 8
        if b1 & 0x80:
            key = data[pos : pos + 4]
            pos += 4
            payload = xor(data[pos : pos + n], key)
        else:
            payload = data[pos : pos + n]
        pos += n
        frames.append((b0, b0 & 0x0F, payload))
    return frames


def upgrade_request(host: str, port: int, path: str = "/", extra: str = "") -> bytes:
    """Return an opening handshake request, with a fresh key and ``extra`` header lines."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\n{extra}\r\n"
    ).encode()


def upgrade_response(request: bytes) -> bytes:
    """Return the 101 response that accepts ``request`` (an opening handshake's head)."""
    key = next(
        line.split(b":", 1)[1].strip()
        for line in request.split(b"\r\n")
        if line.lower().startswith(b"sec-websocket-key:")
    )
    # RFC 6455 4.2.2: the key and the GUID, SHA-1, base64.
    digest = hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest()
    return (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + base64.b64encode(digest) + b"\r\n\r\n"
    )
