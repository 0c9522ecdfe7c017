"""The asyncio layer: connections, servers and clients over the sans-I/O core.

Its modules mirror websockets': :mod:`portside.asyncio.server` (``serve``,
``broadcast``, ``basic_auth``...), :mod:`portside.asyncio.client` (``connect``,
``process_exception``...), :mod:`portside.asyncio.router` (``route``).
"""

from __future__ import annotations

from .client import ClientConnection, connect, unix_connect
from .connection import Connection
from .server import Server, ServerConnection, basic_auth, broadcast, serve, unix_serve

__all__ = [
    "ClientConnection",
    "Connection",
    "Server",
    "ServerConnection",
    "basic_auth",
    "broadcast",
    "connect",
    "serve",
    "unix_connect",
    "unix_serve",
]
