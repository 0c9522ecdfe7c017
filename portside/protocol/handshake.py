"""Pieces of the opening handshake shared by both sides (RFC 6455 sections 1.3, 4)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os

__all__ = ["GUID", "generate_key", "accept_key", "check_key"]

#: RFC 6455 1.3: the globally unique identifier appended to the key.
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def generate_key() -> str:
    """Return a random ``Sec-WebSocket-Key`` (RFC 6455 4.1: 16 random bytes, base64)."""
    return base64.b64encode(os.urandom(16)).decode()


def check_key(key: str) -> bool:
    """Tell whether ``key`` is base64 for exactly 16 bytes (RFC 6455 4.2.1 item 5)."""
    # 16 bytes are 24 characters of base64, the last two of them padding.
    if len(key) != 24:
        return False
    try:
        # Validated: only the base64 alphabet, padding only at the end. A str
        # with characters outside ASCII raises ValueError, like bad base64.
        raw = base64.b64decode(key, validate=True)
    except ValueError:
        return False
    return len(raw) == 16


def accept_key(key: str) -> str:
    """Return the ``Sec-WebSocket-Accept`` value for ``key`` (RFC 6455 4.2.2 item 5.4)."""
    digest = hashlib.sha1((key + GUID).encode()).digest()
    return binascii.b2a_base64(digest, newline=False).decode()
