"""portside: WebSocket library and application server for asyncio.

Servers: :func:`serve`, :func:`unix_serve`, :func:`route` and :func:`unix_route`.
Clients: :func:`connect` and :func:`unix_connect`. Handlers receive a
:class:`ServerConnection`; clients get a :class:`ClientConnection`; both offer
``recv``, ``send``, ``ping``, ``close`` and ``async for``; :func:`broadcast`
sends a message to many. The modules mirror websockets' (``portside.asyncio.server``,
``portside.asyncio.client``, ``portside.exceptions``, ...), so code written for
websockets ports by changing ``websockets`` into ``portside`` in its imports.

The application server: :class:`App` (a handler with its options, hooks and
readiness checks), ``portside serve MODULE:ATTR`` (worker processes, drains,
rolling restarts, health checks, metrics), and :func:`run` / :class:`Runner`
(the same in one process).
"""

from __future__ import annotations

from . import exceptions
from .app import App, Runner, run
from .asyncio.allocator import tune_allocator
from .asyncio.broadcasting import SlowConsumerPolicy
from .asyncio.client import ClientConnection, connect, unix_connect
from .asyncio.connection import Connection
from .asyncio.router import Router, route, unix_route
from .asyncio.server import (
    Server,
    ServerConnection,
    basic_auth,
    broadcast,
    serve,
    unix_serve,
)
from .exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    DuplicateParameter,
    HeaderLineTooLong,
    InvalidHandshake,
    InvalidHeader,
    InvalidHeaderFormat,
    InvalidHeaderValue,
    InvalidMessage,
    InvalidMethod,
    InvalidOrigin,
    InvalidParameterName,
    InvalidParameterValue,
    InvalidProtocol,
    InvalidProxy,
    InvalidProxyMessage,
    InvalidProxyStatus,
    InvalidState,
    InvalidStatus,
    InvalidUpgrade,
    InvalidURI,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
    ProxyError,
    RequestLineTooLong,
    SecurityError,
    StatusLineTooLong,
    TooManyFragments,
    TooManyHeaders,
    WebSocketException,
)
from .hub import Hub
from .protocol.client import ClientProtocol
from .protocol.close import Close, CloseCode
from .protocol.connection import Protocol, Side
from .protocol.deflate import Deflate
from .protocol.frames import Frame, Opcode
from .protocol.headers import Headers, HeadersLike, MultipleValuesError
from .protocol.http11 import Request, Response
from .protocol.server import ServerProtocol
from .protocol.state import State
from .typing import (
    Data,
    ExtensionName,
    ExtensionParameter,
    LoggerLike,
    Origin,
    StatusLike,
    Subprotocol,
)
from .version import __version__

__all__ = [
    "App",
    "ClientConnection",
    "ClientProtocol",
    "Close",
    "CloseCode",
    "ConcurrencyError",
    "Connection",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "Data",
    "Deflate",
    "DuplicateParameter",
    "ExtensionName",
    "ExtensionParameter",
    "Frame",
    "HeaderLineTooLong",
    "Headers",
    "HeadersLike",
    "Hub",
    "InvalidHandshake",
    "InvalidHeader",
    "InvalidHeaderFormat",
    "InvalidHeaderValue",
    "InvalidMessage",
    "InvalidMethod",
    "InvalidOrigin",
    "InvalidParameterName",
    "InvalidParameterValue",
    "InvalidProtocol",
    "InvalidProxy",
    "InvalidProxyMessage",
    "InvalidProxyStatus",
    "InvalidState",
    "InvalidStatus",
    "InvalidURI",
    "InvalidUpgrade",
    "LoggerLike",
    "MultipleValuesError",
    "NegotiationError",
    "Opcode",
    "Origin",
    "PayloadTooBig",
    "Protocol",
    "ProtocolError",
    "ProxyError",
    "Request",
    "RequestLineTooLong",
    "Response",
    "Router",
    "SecurityError",
    "Runner",
    "Server",
    "ServerConnection",
    "ServerProtocol",
    "Side",
    "SlowConsumerPolicy",
    "State",
    "StatusLike",
    "StatusLineTooLong",
    "Subprotocol",
    "TooManyFragments",
    "TooManyHeaders",
    "WebSocketException",
    "__version__",
    "basic_auth",
    "broadcast",
    "connect",
    "exceptions",
    "route",
    "run",
    "serve",
    "tune_allocator",
    "unix_connect",
    "unix_route",
    "unix_serve",
]
