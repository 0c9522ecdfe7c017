"""HTTP Basic authentication for servers on asyncio: :func:`basic_auth`."""

from __future__ import annotations

import http
import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from ..protocol.auth import INVALID_CREDENTIALS, BasicAuth, CredentialsChecker
from ..protocol.http11 import Request, Response

if TYPE_CHECKING:  # pragma: no cover
    from .server import ServerConnection

__all__ = ["basic_auth"]


def basic_auth(
    realm: str = "",
    credentials: tuple[str, str] | Iterable[tuple[str, str]] | None = None,
    check_credentials: CredentialsChecker | None = None,
) -> Callable[[ServerConnection, Request], Awaitable[Response | None]]:
    """Return a ``process_request`` that requires HTTP Basic authentication (RFC 7617).

    ::

        async with serve(handler, host, port, process_request=basic_auth(
            realm="my dev server", credentials=("hello", "iloveyou"),
        )):
            ...

    A request with valid credentials goes on to the handshake, and the
    connection's ``username`` attribute holds the user name. Any other gets
    ``401 Unauthorized`` with a ``WWW-Authenticate`` header naming ``realm``.

    Args:
        realm: The protection space, shown by browsers; ASCII is safest.
        credentials: A ``(username, password)`` pair or pairs, compared in
            constant time.
        check_credentials: ``check_credentials(username, password)``, a
            function or a coroutine function, returning whether they are valid.
            Give this or ``credentials``, not both.

    Raises:
        ValueError: If both or neither of ``credentials`` and
            ``check_credentials`` are given, or ``realm`` cannot go in a header.
        TypeError: If ``credentials`` is not a pair of strings or pairs of them.
    """
    auth = BasicAuth(realm, credentials, check_credentials)

    async def process_request(connection: ServerConnection, request: Request) -> Response | None:
        found = auth.request_credentials(request)
        if isinstance(found, str):
            return auth.challenge(connection.respond(http.HTTPStatus.UNAUTHORIZED, found))
        username, password = found
        valid = auth.check_credentials(username, password)
        if inspect.isawaitable(valid):
            valid = await valid
        if not valid:
            response = connection.respond(http.HTTPStatus.UNAUTHORIZED, INVALID_CREDENTIALS)
            return auth.challenge(response)
        connection.username = username
        return None

    return process_request
