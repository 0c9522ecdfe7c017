"""WebSocket URIs: ``ws://`` and ``wss://`` (RFC 6455 section 3)."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from ..exceptions import InvalidURI

__all__ = ["WebSocketURI", "parse_uri"]


@dataclass(frozen=True)
class WebSocketURI:
    """A parsed WebSocket URI.

    Attributes:
        secure: ``True`` for ``wss://``.
        host: The host name or IP address, without brackets.
        port: The port, defaulting to 80 or 443.
        path: The path and query, at least ``/``.
        user_info: ``(username, password)`` for HTTP Basic authentication, if any.
    """

    secure: bool
    host: str
    port: int
    path: str
    user_info: tuple[str, str] | None = None

    @property
    def host_header(self) -> str:
        """The value of the ``Host`` header: the port only when not the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.secure else 80
        return host if self.port == default else f"{host}:{self.port}"


def parse_uri(uri: str) -> WebSocketURI:
    """Parse and validate a WebSocket URI.

    Raises:
        InvalidURI: If ``uri`` is not a valid ``ws://`` or ``wss://`` URI.
    """
    try:
        parsed = urllib.parse.urlsplit(uri)
        port = parsed.port
    except ValueError as exc:
        raise InvalidURI(uri, str(exc)) from None
    if parsed.scheme not in ("ws", "wss"):
        raise InvalidURI(uri, "scheme isn't ws or wss")
    if not parsed.hostname:
        raise InvalidURI(uri, "hostname isn't provided")
    if parsed.fragment:
        # RFC 6455 3: fragment identifiers are meaningless in WebSocket URIs.
        raise InvalidURI(uri, "fragments aren't allowed")
    secure = parsed.scheme == "wss"
    path = parsed.path or "/"
    if parsed.query:
        path += "?" + parsed.query
    # Percent-encode what HTTP does not allow in a request target, keep the rest.
    path = urllib.parse.quote(path, safe="/%?=&;:@!$'()*+,~-._")
    user_info = None
    if parsed.username is not None:
        # RFC 7617 2: Basic credentials are a user-id without ':' and a password.
        if parsed.password is None:
            raise InvalidURI(uri, "username provided without password")
        try:
            username = urllib.parse.unquote(parsed.username, errors="strict")
            password = urllib.parse.unquote(parsed.password, errors="strict")
        except UnicodeDecodeError:
            raise InvalidURI(uri, "credentials aren't UTF-8 once unquoted") from None
        if ":" in username:
            raise InvalidURI(uri, "username contains ':'")
        user_info = (username, password)
    return WebSocketURI(
        secure=secure,
        host=parsed.hostname,
        port=port if port is not None else (443 if secure else 80),
        path=path,
        user_info=user_info,
    )
