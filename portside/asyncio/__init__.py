"""The asyncio layer: connections, servers and clients over the sans-I/O core."""

from __future__ import annotations

from .client import ClientConnection, connect, unix_connect
from .connection import Connection
from .server import Server, ServerConnection, serve, unix_serve

__all__ = [
    "ClientConnection",
    "Connection",
    "Server",
    "ServerConnection",
    "connect",
    "serve",
    "unix_connect",
    "unix_serve",
]
