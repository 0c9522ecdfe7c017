"""Close codes and the payload of Close frames (RFC 6455 sections 5.5.1 and 7.4)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ..exceptions import InvalidUTF8, ProtocolError

__all__ = ["CloseCode", "Close", "OK_CLOSE_CODES", "is_valid_close_code"]


class CloseCode(enum.IntEnum):
    """Close codes defined by RFC 6455 section 7.4.1 and the IANA registry."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RCVD = 1005
    ABNORMAL_CLOSURE = 1006
    INVALID_DATA = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014
    TLS_HANDSHAKE = 1015


# Codes that may appear in a Close frame on the wire. RFC 6455 7.4.1: 1004 is
# reserved; 1005, 1006 and 1015 MUST NOT be set as a status code in a Close frame.
# The IANA registry adds 1012-1014; 3000-4999 belong to libraries and applications.
_WIRE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011})
_WIRE_CODES |= frozenset({1012, 1013, 1014})

#: Close codes that end a connection normally (:class:`ConnectionClosedOK`).
OK_CLOSE_CODES = frozenset({1000, 1001, 1005})

_REASONS = {
    1000: "OK",
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    1005: "no status received [internal]",
    1006: "connection closed abnormally [internal]",
    1007: "invalid frame payload data",
    1008: "policy violation",
    1009: "message too big",
    1010: "mandatory extension",
    1011: "internal error",
    1012: "service restart",
    1013: "try again later",
    1014: "bad gateway",
    1015: "TLS handshake failure [internal]",
}


def is_valid_close_code(code: int) -> bool:
    """Tell whether ``code`` may be sent in a Close frame (RFC 6455 section 7.4)."""
    return code in _WIRE_CODES or 3000 <= code < 5000


def _describe(code: int) -> str:
    if code in _REASONS:
        return _REASONS[code]
    if 3000 <= code < 4000:
        return "registered"
    if 4000 <= code < 5000:
        return "private use"
    return "unknown"


@dataclass(frozen=True)
class Close:
    """The code and reason of a Close frame.

    Attributes:
        code: The close code; 1005 stands for a Close frame without a payload.
        reason: The close reason, possibly empty.
    """

    code: int
    reason: str = ""

    def __str__(self) -> str:
        text = f"{self.code} ({_describe(self.code)})"
        return f"{text} {self.reason}" if self.reason else text

    @classmethod
    def parse(cls, payload: bytes) -> Close:
        """Parse the payload of a Close frame.

        Raises:
            ProtocolError: If the payload is one byte long or the code is invalid.
            InvalidUTF8: If the reason is not valid UTF-8.
        """
        if not payload:
            # RFC 6455 7.1.5: no status code in the frame means 1005.
            return cls(1005)
        if len(payload) == 1:
            raise ProtocolError("close frame too short")
        code = int.from_bytes(payload[:2], "big")
        if not is_valid_close_code(code):
            raise ProtocolError(f"invalid close code {code}")
        try:
            # RFC 6455 5.5.1: the body after the code is UTF-8 encoded data.
            reason = payload[2:].decode()
        except UnicodeDecodeError:
            raise InvalidUTF8("invalid UTF-8 in close reason") from None
        return cls(code, reason)

    def serialize(self) -> bytes:
        """Serialize to the payload of a Close frame (empty for code 1005).

        Raises:
            ProtocolError: If the code may not be sent or the payload exceeds the
                125 bytes allowed in a control frame.
        """
        if self.code == 1005:
            return b""
        if not is_valid_close_code(self.code):
            raise ProtocolError(f"invalid close code {self.code}")
        payload = self.code.to_bytes(2, "big") + self.reason.encode()
        if len(payload) > 125:
            # RFC 6455 5.5: control frames carry at most 125 bytes of payload.
            raise ProtocolError("close reason is longer than 123 bytes")
        return payload
