"""Routing opening requests to handlers by path, on werkzeug's URL maps.

The part of ``route()`` that the asyncio layer (:mod:`portside.asyncio.router`)
and the threading layer (``portside.sync.router``) share: it needs no I/O and no
event loop. :meth:`Router.route_request` runs as (part of) ``process_request``:
it matches the request's path against the :class:`werkzeug.routing.Map` and
either answers the request (404, a redirect, another HTTP error) or records on
the connection the handler to call and the keyword arguments captured from the
URL. Each layer's ``Router`` subclass adds the handler that calls it.

werkzeug is an optional dependency: ``pip install portside[router]``.
"""

from __future__ import annotations

import http
import urllib.parse
from typing import TYPE_CHECKING, Any

from .protocol.http11 import Request, Response

if TYPE_CHECKING:  # pragma: no cover
    from werkzeug.routing import Map

__all__ = ["Router", "require_werkzeug", "url_scheme_for"]


def require_werkzeug(function: str) -> None:
    """Raise a clear :class:`ImportError` when werkzeug is missing.

    Args:
        function: The name of the function that needs it, for the message.
    """
    try:
        import werkzeug.routing  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            f"{function}() requires werkzeug: pip install 'portside[router]'"
        ) from exc


def url_scheme_for(ssl: object) -> str:
    """Return the scheme redirects are built with: ``wss`` when ``ssl`` is set.

    ``ssl=True`` in ``route()`` means that a reverse proxy terminates TLS: the
    server does not encrypt, but clients connect with ``wss://``.
    """
    return "ws" if ssl is None else "wss"


class Router:
    """Sends each opening request to the handler its path maps to.

    Every rule of ``url_map`` is marked ``websocket=True``: werkzeug then
    matches it against WebSocket requests (``ws://``/``wss://``) only.

    Args:
        url_map: Rules whose endpoints are the connection handlers.
        server_name: The server's host name as clients see it, for the
            redirects' ``Location``; ``None``: the request's ``Host`` header.
        url_scheme: ``"ws"`` or ``"wss"``, for the redirects' ``Location``.
    """

    def __init__(
        self, url_map: Map, server_name: str | None = None, url_scheme: str = "ws"
    ) -> None:
        require_werkzeug("route")
        self.url_map = url_map
        self.server_name = server_name
        self.url_scheme = url_scheme
        for rule in url_map.iter_rules():
            rule.websocket = True

    def get_server_name(self, connection: Any, request: Request) -> str:
        """Return the host name to bind the URL map to for ``request``."""
        if self.server_name is not None:
            return self.server_name
        # The server checked that there is exactly one Host header only if the
        # handshake went on; a request without one gets the default.
        hosts = request.headers.get_all("Host")
        return hosts[0] if len(hosts) == 1 else "localhost"

    def redirect(self, connection: Any, url: str) -> Response:
        """Answer with a redirect to ``url``: 301 Moved Permanently.

        werkzeug redirects to the canonical URL of a rule (a missing trailing
        slash, ``redirect_to=``, a merged slash): the same answer every time.
        """
        response: Response = connection.respond(
            http.HTTPStatus.MOVED_PERMANENTLY, f"Moved Permanently to {url}\n"
        )
        response.headers["Location"] = url
        return response

    def not_found(self, connection: Any) -> Response:
        """Answer a request whose path matches no rule: 404 Not Found."""
        response: Response = connection.respond(http.HTTPStatus.NOT_FOUND, "Not Found\n")
        return response

    def route_request(self, connection: Any, request: Request) -> Response | None:
        """Match ``request`` against the URL map.

        Returns:
            ``None`` when a rule matched: ``connection.handler`` and
            ``connection.handler_kwargs`` then say what to call. Otherwise, the
            response to send: 404, 301, or the status of another werkzeug HTTP
            error (405 for a rule restricted to other methods, for example).
        """
        from werkzeug.exceptions import HTTPException, NotFound
        from werkzeug.routing import RequestRedirect

        adapter = self.url_map.bind(
            server_name=self.get_server_name(connection, request),
            url_scheme=self.url_scheme,
        )
        target = urllib.parse.urlsplit(request.path)
        try:
            handler, kwargs = adapter.match(path_info=target.path, query_args=target.query)
        except RequestRedirect as redirect:
            return self.redirect(connection, redirect.new_url)
        except NotFound:
            return self.not_found(connection)
        except HTTPException as exc:
            code = exc.code or 400
            failed: Response = connection.respond(code, f"{http.HTTPStatus(code).phrase}\n")
            return failed
        connection.handler = handler
        connection.handler_kwargs = kwargs
        return None
