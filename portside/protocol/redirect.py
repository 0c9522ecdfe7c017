"""Following the HTTP redirects of an opening handshake, without I/O.

``connect(follow_redirects=True)`` of either I/O layer opens a connection, and
when the server answers with a redirect, opens one to where it points: that is
:class:`Redirects`' to decide. It follows ``301``, ``302``, ``303``, ``307``
and ``308`` with exactly one ``Location`` header, at most
:data:`MAX_REDIRECTS` times, never from ``wss://`` down to ``ws://``, and does
not pass the request's credentials on to another origin.
"""

from __future__ import annotations

import urllib.parse

from ..exceptions import InvalidHandshake, InvalidURI
from .headers import Headers, HeadersLike
from .http11 import Response
from .uri import WebSocketURI, parse_uri

__all__ = ["CREDENTIAL_HEADERS", "MAX_REDIRECTS", "REDIRECT_STATUSES", "Redirects"]

#: Redirects followed before giving up.
MAX_REDIRECTS = 10

#: The statuses of the redirects that are followed.
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

#: Request headers that carry credentials: not sent on to another origin.
CREDENTIAL_HEADERS = ("authorization", "cookie", "proxy-authorization")


class Redirects:
    """Where the next attempt of one ``connect()`` goes, redirect after redirect.

    Args:
        uri: The URI ``connect()`` was given.
        headers: The extra request headers ``connect()`` was given.
        follow: ``False`` follows no redirect (``follow_redirects=False``).

    Attributes:
        uri: Where the next attempt goes.
        headers: The extra request headers of the next attempt.
        location: The URI of the last redirect followed, as a string.
    """

    def __init__(self, uri: WebSocketURI, headers: HeadersLike | None, follow: bool = True) -> None:
        self.uri = uri
        self.headers = headers
        self.follow_redirects = follow
        self.location = ""
        self._followed = 0

    def follow(self, response: Response) -> bool:
        """Take the server's answer to an attempt; tell whether to attempt again.

        Returns:
            ``True`` if ``response`` is a redirect to follow: :attr:`uri` and
            :attr:`headers` then say where and with what. ``False`` if it is
            not one (another status, no ``Location`` or several): the attempt
            failed with it.

        Raises:
            InvalidURI: If the redirect leads from ``wss://`` to ``ws://``, or
                nowhere valid.
            InvalidHandshake: After :data:`MAX_REDIRECTS` redirects.
        """
        if not self.follow_redirects or response.status_code not in REDIRECT_STATUSES:
            return False
        locations = response.headers.get_all("Location")
        if len(locations) != 1:
            return False  # none, or several to choose from: not followed
        uri = self.uri
        scheme = "wss" if uri.secure else "ws"
        location = urllib.parse.urljoin(f"{scheme}://{uri.host_header}{uri.path}", locations[0])
        new_uri = parse_uri(location)
        if uri.secure and not new_uri.secure:
            raise InvalidURI(location, "redirect from wss:// to ws:// refused") from None
        self._followed += 1
        if self._followed > MAX_REDIRECTS:
            raise InvalidHandshake(f"more than {MAX_REDIRECTS} redirects") from None
        if self.headers is not None and (new_uri.secure, new_uri.host, new_uri.port) != (
            uri.secure,
            uri.host,
            uri.port,
        ):
            # Another origin: do not hand it this one's credentials.
            self.headers = Headers(
                (name, value)
                for name, value in Headers(self.headers).raw_items()
                if name.lower() not in CREDENTIAL_HEADERS
            )
        self.uri = new_uri
        self.location = location
        return True
