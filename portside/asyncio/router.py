"""Routing connections to handlers by path on asyncio: :func:`route` and :func:`unix_route`.

Built on werkzeug's URL maps (``pip install 'portside[router]'``); the matching
itself is :class:`portside.routing.Router`'s, shared with the threading layer.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from ..protocol.http11 import Request, Response
from ..routing import Router as RouterBase
from ..routing import require_werkzeug, url_scheme_for
from .server import (
    Serve,
    ServerConnection,
    _legacy_response,
    process_request_is_legacy,
    serve,
    unix_serve,
)

if TYPE_CHECKING:  # pragma: no cover
    from werkzeug.routing import Map

__all__ = ["route", "unix_route", "Router"]


class Router(RouterBase):
    """Dispatches each connection to the handler its path maps to.

    Subclass it, and pass the subclass as ``create_router``, to change how
    requests are routed: override :meth:`get_server_name`, :meth:`redirect`
    or :meth:`not_found`.
    """

    async def handler(self, connection: ServerConnection) -> None:
        """Call the handler :meth:`route_request` chose, with the URL's values."""
        handler: Any = connection.handler  # type: ignore[attr-defined]
        kwargs: dict[str, Any] = connection.handler_kwargs  # type: ignore[attr-defined]
        await handler(connection, **kwargs)


def route(
    url_map: Map,
    *args: Any,
    server_name: str | None = None,
    ssl: Any = None,
    create_router: type[Router] | None = None,
    **kwargs: Any,
) -> Serve:
    """Start a WebSocket server that sends each path to its own handler.

    Takes the arguments of :func:`~portside.asyncio.server.serve`, but the
    handler: the first argument is a :class:`werkzeug.routing.Map` whose
    endpoints are handlers, called with the connection and the values the URL
    captured as keyword arguments::

        from werkzeug.routing import Map, Rule

        async def chat(websocket, room):
            ...

        url_map = Map([Rule("/chat/<room>", endpoint=chat), ...])
        async with route(url_map, "localhost", 8765) as server:
            await server.serve_forever()

    A path that matches no rule gets 404; one that werkzeug redirects (a
    missing trailing slash, ``Rule(..., redirect_to=...)``) gets 301 with the
    new URL. Every rule is matched as a WebSocket rule (``websocket=True``).
    A ``process_request`` runs first; if it returns ``None``, routing follows.

    Args:
        url_map: The URL patterns and their handlers.
        server_name: The server's host name as clients see it, for redirects;
            ``None``: the request's ``Host`` header.
        ssl: An :class:`ssl.SSLContext` to serve TLS; ``True`` when a reverse
            proxy terminates TLS (redirects then say ``wss://``).
        create_router: A :class:`Router` subclass to route with.
        *args: ``host`` and ``port``, as for ``serve()``.
        **kwargs: The options of ``serve()``.

    Raises:
        ImportError: If werkzeug is not installed.
    """
    require_werkzeug("route")
    return _route(serve, url_map, args, server_name, ssl, create_router, kwargs)


def unix_route(url_map: Map, path: str | None = None, **kwargs: Any) -> Serve:
    """Like :func:`route`, on a Unix socket at ``path`` (as ``unix_serve()``).

    Raises:
        ImportError: If werkzeug is not installed.
    """
    require_werkzeug("unix_route")
    server_name = kwargs.pop("server_name", None)
    ssl = kwargs.pop("ssl", None)
    create_router = kwargs.pop("create_router", None)
    return _route(unix_serve, url_map, (path,), server_name, ssl, create_router, kwargs)


def _route(
    start: Any,
    url_map: Map,
    args: tuple[Any, ...],
    server_name: str | None,
    ssl: Any,
    create_router: type[Router] | None,
    kwargs: dict[str, Any],
) -> Serve:
    router = (create_router or Router)(url_map, server_name, url_scheme_for(ssl))
    if ssl is not None and ssl is not True:
        kwargs["ssl"] = ssl
    before = kwargs.pop("process_request", None)
    if before is None:
        process_request: Any = router.route_request
    else:
        legacy = process_request_is_legacy(before)

        async def process_request(
            connection: ServerConnection, request: Request
        ) -> Response | None:
            if legacy:
                response = before(request.path, request.headers)
            else:
                response = before(connection, request)
            if inspect.isawaitable(response):
                response = await response
            if isinstance(response, tuple):
                return _legacy_response(response)
            if response is not None:
                return response  # type: ignore[no-any-return]
            return router.route_request(connection, request)

    server: Serve = start(router.handler, *args, process_request=process_request, **kwargs)
    return server
