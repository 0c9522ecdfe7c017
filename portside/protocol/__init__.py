"""The sans-I/O WebSocket core: RFC 6455 and RFC 7692 on plain bytes.

Nothing in this package performs I/O, reads a clock or imports asyncio, socket or
signal (``tests/protocol/test_layering.py`` checks it). The asyncio layer in
:mod:`portside.asyncio` drives it; other I/O layers could too.
"""

from __future__ import annotations

from .client import ClientProtocol
from .close import Close, CloseCode
from .connection import CLIENT, SERVER, Protocol, Side
from .deflate import Deflate, PerMessageDeflate
from .events import Ping, Pong
from .headers import Headers, MultipleValuesError
from .http11 import Request, Response
from .reader import Arena
from .server import ServerProtocol
from .state import State
from .uri import WebSocketURI, parse_uri

__all__ = [
    "Arena",
    "CLIENT",
    "ClientProtocol",
    "Close",
    "CloseCode",
    "Deflate",
    "Headers",
    "MultipleValuesError",
    "PerMessageDeflate",
    "Ping",
    "Pong",
    "Protocol",
    "Request",
    "Response",
    "SERVER",
    "ServerProtocol",
    "Side",
    "State",
    "WebSocketURI",
    "parse_uri",
]
