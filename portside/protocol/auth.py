"""HTTP Basic authentication (RFC 7617) without I/O.

For clients, :func:`build_authorization_basic` makes the ``Authorization``
header that a ``ws://user:password@host/`` URI asks for (and the
``Proxy-Authorization`` header of a proxy with credentials). For servers,
:class:`BasicAuth` reads the credentials of an opening request, checks them in
constant time, and adds the ``WWW-Authenticate`` challenge to a 401 response;
``basic_auth()`` in the asyncio and threading layers drives it.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Union, cast

from ..exceptions import InvalidHeaderFormat, InvalidHeaderValue
from .http11 import Request, Response

__all__ = [
    "BasicAuth",
    "CredentialsChecker",
    "build_authorization_basic",
    "build_www_authenticate_basic",
    "check_credentials_in",
    "parse_authorization_basic",
]

#: ``check_credentials(username, password)``: whether they are valid, possibly
#: awaitable in the asyncio layer.
CredentialsChecker = Callable[[str, str], Union[bool, Awaitable[bool]]]

# RFC 7235 2.1: token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
# RFC 7235 2.1: auth-scheme = token, then 1*SP before the credentials.
_CREDENTIALS = re.compile(r"([-!#$%&'*+.^_`|~0-9a-zA-Z]+) +(.*)", re.DOTALL)
# RFC 7230 3.2.6: what a quoted-string may hold (qdtext and quoted-pair).
_QUOTABLE = re.compile(r"[\t \x21-\x7e\x80-\xff]*")
_TO_QUOTE = re.compile(r'(["\\])')

# The bodies of the 401 responses, as websockets words them.
MISSING_CREDENTIALS = "Missing credentials\n"
UNSUPPORTED_CREDENTIALS = "Unsupported credentials\n"
INVALID_CREDENTIALS = "Invalid credentials\n"


def build_authorization_basic(username: str, password: str) -> str:
    """Return the value of an ``Authorization`` header for Basic authentication.

    Non-UTF-8 bytes may be given as surrogate escapes (``errors="surrogateescape"``).

    Raises:
        ValueError: If ``username`` contains a colon, which Basic credentials
            cannot carry (RFC 7617 section 2).
    """
    if ":" in username:
        raise ValueError("a user name for Basic authentication cannot contain ':'")
    user_pass = f"{username}:{password}".encode(errors="surrogateescape")
    return "Basic " + base64.b64encode(user_pass).decode()


def parse_authorization_basic(header: str) -> tuple[str, str]:
    """Parse the value of an ``Authorization`` header for Basic authentication.

    Bytes that are not UTF-8 come back as surrogate escapes.

    Returns:
        ``(username, password)``.

    Raises:
        InvalidHeaderFormat: If the header is not ``Basic <token68>``.
        InvalidHeaderValue: If the scheme is not Basic, or the credentials are
            not base64 of ``username:password``.
    """
    match = _CREDENTIALS.fullmatch(header)
    if match is None:
        raise InvalidHeaderFormat("Authorization", "expected scheme and credentials", header, 0)
    scheme, token = match.groups()
    # RFC 7235 2.1: the scheme is case-insensitive.
    if scheme.lower() != "basic":
        raise InvalidHeaderValue("Authorization", f"unsupported scheme: {scheme}")
    if _TOKEN68.fullmatch(token) is None:
        raise InvalidHeaderFormat("Authorization", "expected token68", header, match.start(2))
    try:
        user_pass = base64.b64decode(token, validate=True)
    except binascii.Error:
        raise InvalidHeaderValue("Authorization", "expected base64-encoded credentials") from None
    username, colon, password = user_pass.decode(errors="surrogateescape").partition(":")
    if not colon:
        raise InvalidHeaderValue("Authorization", "expected username:password credentials")
    return username, password


def build_www_authenticate_basic(realm: str) -> str:
    """Return the value of a ``WWW-Authenticate`` header asking for Basic credentials.

    Raises:
        ValueError: If ``realm`` holds characters a quoted-string cannot carry
            (control characters other than tab).
    """
    if _QUOTABLE.fullmatch(realm) is None:
        raise ValueError(f"realm cannot be sent in an HTTP header: {realm!r}")
    quoted = _TO_QUOTE.sub(r"\\\1", realm)
    # RFC 7617 2.1: charset="UTF-8" tells clients how to encode credentials.
    return f'Basic realm="{quoted}", charset="UTF-8"'


def check_credentials_in(credentials: Iterable[tuple[str, str]]) -> Callable[[str, str], bool]:
    """Return a checker that accepts exactly the given ``(username, password)`` pairs.

    Passwords are compared with :func:`hmac.compare_digest`, and the same
    comparison runs for an unknown user name, so the time taken tells nothing
    about a password nor about which user names exist (beyond the length of the
    password tried). When a user name is listed twice, the last password counts.
    """
    expected = {
        username: password.encode(errors="surrogateescape") for username, password in credentials
    }

    def check(username: str, password: str) -> bool:
        given = password.encode(errors="surrogateescape")
        known = expected.get(username)
        if known is None:
            hmac.compare_digest(given, given)
            return False
        return hmac.compare_digest(known, given)

    return check


def _is_credentials(value: object) -> bool:
    return (
        isinstance(value, tuple)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], str)
    )


class BasicAuth:
    """HTTP Basic authentication of opening requests, shared by the I/O layers.

    One of ``credentials`` and ``check_credentials`` must be given, not both.

    Args:
        realm: The protection space named in the challenge; ASCII is safest
            (RFC 7235 section 2.2).
        credentials: A ``(username, password)`` pair or an iterable of pairs,
            checked in constant time (:func:`check_credentials_in`).
        check_credentials: ``check_credentials(username, password)`` returning
            whether they are valid (a coroutine function in the asyncio layer is
            awaited).

    Raises:
        ValueError: If both or neither of ``credentials`` and
            ``check_credentials`` are given, or ``realm`` cannot be sent.
        TypeError: If ``credentials`` is not a pair nor pairs of strings, or
            ``check_credentials`` is not callable.

    Attributes:
        realm: The realm.
        check_credentials: The checker, ``check_credentials`` or one built from
            ``credentials``.
    """

    def __init__(
        self,
        realm: str = "",
        credentials: tuple[str, str] | Iterable[tuple[str, str]] | None = None,
        check_credentials: CredentialsChecker | None = None,
    ) -> None:
        if (credentials is None) == (check_credentials is None):
            raise ValueError("provide either credentials or check_credentials")
        self._challenge = build_www_authenticate_basic(realm)
        self.realm = realm
        if credentials is not None:
            if _is_credentials(credentials):
                pairs = [cast(tuple[str, str], credentials)]
            elif isinstance(credentials, Iterable) and not isinstance(credentials, (str, bytes)):
                pairs = list(cast(Iterable[tuple[str, str]], credentials))
                if not all(_is_credentials(pair) for pair in pairs):
                    raise TypeError(f"invalid credentials argument: {credentials!r}")
            else:
                raise TypeError(f"invalid credentials argument: {credentials!r}")
            check_credentials = check_credentials_in(pairs)
        elif not callable(check_credentials):
            raise TypeError(f"check_credentials must be callable, not {check_credentials!r}")
        self.check_credentials: CredentialsChecker = check_credentials

    def request_credentials(self, request: Request) -> tuple[str, str] | str:
        """Return the ``(username, password)`` of ``request``.

        Returns:
            The credentials, or, when there are none usable, the body of the 401
            response to send: missing header, another scheme, or a malformed
            header.
        """
        values = request.headers.get_all("Authorization")
        if not values:
            return MISSING_CREDENTIALS
        if len(values) > 1:
            return UNSUPPORTED_CREDENTIALS
        try:
            return parse_authorization_basic(values[0])
        except (InvalidHeaderFormat, InvalidHeaderValue):
            return UNSUPPORTED_CREDENTIALS

    def challenge(self, response: Response) -> Response:
        """Add the ``WWW-Authenticate`` header to a 401 response; return it.

        RFC 7235 section 3.1: a 401 response carries a challenge.
        """
        response.headers["WWW-Authenticate"] = self._challenge
        return response
