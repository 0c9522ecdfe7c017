"""portside: WebSocket library and application server for asyncio.

Servers: :func:`serve` and :func:`unix_serve`. Clients: :func:`connect` and
:func:`unix_connect`. Handlers receive a :class:`ServerConnection`; clients get a
:class:`ClientConnection`; both offer ``recv``, ``send``, ``ping``, ``close`` and
``async for``. Code written for websockets ports by changing
``import websockets`` into ``import portside as websockets``.
"""

from __future__ import annotations

from . import exceptions
from .asyncio.allocator import tune_allocator
from .asyncio.client import ClientConnection, connect, unix_connect
from .asyncio.connection import Connection, Data
from .asyncio.runner import run
from .asyncio.server import Server, ServerConnection, serve, unix_serve
from .exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidHeader,
    InvalidMessage,
    InvalidOrigin,
    InvalidState,
    InvalidStatus,
    InvalidUpgrade,
    InvalidURI,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
    WebSocketException,
)
from .hub import Hub
from .protocol.close import Close, CloseCode
from .protocol.deflate import Deflate
from .protocol.headers import Headers
from .protocol.http11 import Request, Response
from .protocol.state import State
from .version import __version__

__all__ = [
    "ClientConnection",
    "Close",
    "CloseCode",
    "ConcurrencyError",
    "Connection",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "Data",
    "Deflate",
    "Headers",
    "Hub",
    "InvalidHandshake",
    "InvalidHeader",
    "InvalidMessage",
    "InvalidOrigin",
    "InvalidState",
    "InvalidStatus",
    "InvalidURI",
    "InvalidUpgrade",
    "NegotiationError",
    "PayloadTooBig",
    "ProtocolError",
    "Request",
    "Response",
    "Server",
    "ServerConnection",
    "State",
    "WebSocketException",
    "__version__",
    "connect",
    "exceptions",
    "run",
    "serve",
    "tune_allocator",
    "unix_connect",
    "unix_serve",
]
