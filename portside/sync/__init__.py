"""The threading API: connections, servers and clients on threads and blocking sockets.

The same sans-I/O core (:mod:`portside.protocol`) as the asyncio API, driven by
threads instead of an event loop, with the names and behaviour of websockets'
``websockets.sync``: :mod:`portside.sync.server` (:func:`serve`,
:func:`unix_serve`, :func:`basic_auth`, :func:`broadcast`),
:mod:`portside.sync.router` (:func:`route`, :func:`unix_route`, with werkzeug),
:mod:`portside.sync.client` (:func:`connect`, :func:`unix_connect`) and
:mod:`portside.sync.connection`.
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
