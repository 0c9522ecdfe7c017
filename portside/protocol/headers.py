"""HTTP headers: a case-insensitive multi-map, and parsers.

The parsers cover the headers the WebSocket handshake uses (RFC 7230 section
3.2.6, RFC 6455 sections 4 and 9.1).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Callable, TypeVar, Union

from ..exceptions import InvalidHeaderFormat

__all__ = [
    "Headers",
    "HeadersLike",
    "MultipleValuesError",
    "ExtensionParameter",
    "ExtensionHeader",
    "parse_token_list",
    "parse_extension_list",
    "build_extension_list",
    "parse_subprotocol_list",
    "build_token_list",
]


class MultipleValuesError(LookupError):
    """A header that holds several values was read as if it held one."""


class Headers(MutableMapping[str, str]):
    """HTTP headers: names are case-insensitive and may repeat.

    ``headers[name]`` returns the value of a header that appears once and raises
    :class:`KeyError` when it is missing or :class:`MultipleValuesError` when it
    repeats; :meth:`get_all` returns every value. ``headers[name] = value`` *adds*
    a header, as in an HTTP message; delete first to replace one.
    """

    __slots__ = ("_index", "_items")

    def __init__(self, *args: HeadersLike, **kwargs: str) -> None:
        self._items: list[tuple[str, str]] = []
        # Values by lower-case name, built on the first lookup; None when stale.
        self._index: dict[str, list[str]] | None = None
        if len(args) == 1 and not kwargs and type(args[0]) is list:
            # The parser's case: a list of (name, value) pairs.
            self._items = list(args[0])
            return
        for arg in args:
            self.update(arg)
        if kwargs:
            self.update(kwargs)

    def __str__(self) -> str:
        return "".join(f"{name}: {value}\r\n" for name, value in self._items) + "\r\n"

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self._items!r})"

    def copy(self) -> Headers:
        """Return a shallow copy."""
        copy = self.__class__()
        copy._items = self._items.copy()
        return copy

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        return bool(self.get_all(key))

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for name, _ in self._items:
            lower = name.lower()
            if lower not in seen:
                seen.add(lower)
                yield lower

    def __len__(self) -> int:
        return len({name.lower() for name, _ in self._items})

    def __getitem__(self, key: str) -> str:
        values = self.get_all(key)
        if not values:
            raise KeyError(key)
        if len(values) > 1:
            raise MultipleValuesError(key)
        return values[0]

    def __setitem__(self, key: str, value: str) -> None:
        self._items.append((key, value))
        self._index = None

    def __delitem__(self, key: str) -> None:
        lower = key.lower()
        kept = [item for item in self._items if item[0].lower() != lower]
        if len(kept) == len(self._items):
            raise KeyError(key)
        self._items = kept
        self._index = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return sorted((n.lower(), v) for n, v in self._items) == sorted(
            (n.lower(), v) for n, v in other._items
        )

    __hash__ = None  # type: ignore[assignment]

    def clear(self) -> None:
        """Remove every header."""
        self._items.clear()
        self._index = None

    def update(self, *args: HeadersLike, **kwargs: str) -> None:  # type: ignore[override]
        """Add headers from a mapping, a :class:`Headers` or pairs of strings."""
        self._index = None
        for arg in (*args, kwargs):
            if isinstance(arg, Headers):
                self._items.extend(arg._items)
            elif isinstance(arg, Mapping):
                self._items.extend(arg.items())
            else:
                for name, value in arg:
                    self._items.append((name, value))

    def get_all(self, key: str) -> list[str]:
        """Return every value of the header ``key``, in order; empty if missing."""
        index = self._index
        if index is None:
            index = {}
            for name, value in self._items:
                values = index.get(name.lower())
                if values is None:
                    index[name.lower()] = [value]
                else:
                    values.append(value)
            self._index = index
        values = index.get(key.lower())
        return values.copy() if values is not None else []

    def raw_items(self) -> Iterator[tuple[str, str]]:
        """Return ``(name, value)`` pairs with names spelled as received or set."""
        return iter(self._items)


HeadersLike = Union[Headers, Mapping[str, str], Iterable[tuple[str, str]]]
"""Types accepted wherever portside takes headers."""

ExtensionParameter = tuple[str, Union[str, None]]
ExtensionHeader = tuple[str, list[ExtensionParameter]]

_T = TypeVar("_T")
_ItemParser = Callable[[str, int, str], tuple[_T, int]]

# RFC 7230 3.2.6: token = 1*tchar; quoted-string; OWS.
_TOKEN = re.compile(r"[-!#$%&\'*+.^_`|~0-9a-zA-Z]+")
_OWS = re.compile(r"[\t ]*")
_QUOTED = re.compile(
    r'"(?:[\x09\x20-\x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\x09\x20-\x7e\x80-\xff])*"'
)
_UNQUOTE = re.compile(r"\\([\x09\x20-\x7e\x80-\xff])")


def _skip_ows(header: str, pos: int) -> int:
    match = _OWS.match(header, pos)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _token(header: str, pos: int, name: str) -> tuple[str, int]:
    match = _TOKEN.match(header, pos)
    if match is None:
        raise InvalidHeaderFormat(name, "expected token", header, pos)
    return match.group(), match.end()


def _token_or_quoted(header: str, pos: int, name: str) -> tuple[str, int]:
    if pos < len(header) and header[pos] == '"':
        match = _QUOTED.match(header, pos)
        if match is None:
            raise InvalidHeaderFormat(name, "expected quoted string", header, pos)
        return _UNQUOTE.sub(r"\1", match.group()[1:-1]), match.end()
    return _token(header, pos, name)


def _parse_list(header: str, name: str, parse_item: _ItemParser[_T]) -> list[_T]:
    """Parse a comma-separated list, allowing empty items (RFC 7230 section 7)."""
    items: list[_T] = []
    pos = 0
    length = len(header)
    while True:
        # Empty elements and leading commas are allowed: "a, , b".
        while True:
            pos = _skip_ows(header, pos)
            if pos < length and header[pos] == ",":
                pos += 1
            else:
                break
        if pos == length:
            break
        item, pos = parse_item(header, pos, name)
        items.append(item)
        pos = _skip_ows(header, pos)
        if pos == length:
            break
        if header[pos] != ",":
            raise InvalidHeaderFormat(name, "expected comma", header, pos)
        pos += 1
    return items


def parse_token_list(header: str, name: str = "header") -> list[str]:
    """Parse a comma-separated list of tokens, such as ``Connection``."""
    return _parse_list(header, name, _token)


def _protocol(header: str, pos: int, name: str) -> tuple[str, int]:
    # RFC 7230 6.7: protocol = protocol-name ["/" protocol-version]
    value, pos = _token(header, pos, name)
    if pos < len(header) and header[pos] == "/":
        version, pos = _token(header, pos + 1, name)
        value = f"{value}/{version}"
    return value, pos


def parse_upgrade_list(header: str, name: str = "Upgrade") -> list[str]:
    """Parse the ``Upgrade`` header: protocols with an optional version."""
    return _parse_list(header, name, _protocol)


def _extension(header: str, pos: int, name: str) -> tuple[ExtensionHeader, int]:
    # RFC 6455 9.1: extension = extension-token *( ";" extension-param )
    #               extension-param = token [ "=" (token | quoted-string) ]
    ext_name, pos = _token(header, pos, name)
    params: list[ExtensionParameter] = []
    while True:
        pos = _skip_ows(header, pos)
        if pos >= len(header) or header[pos] != ";":
            return (ext_name, params), pos
        pos = _skip_ows(header, pos + 1)
        param, pos = _token(header, pos, name)
        pos = _skip_ows(header, pos)
        value: str | None = None
        if pos < len(header) and header[pos] == "=":
            pos = _skip_ows(header, pos + 1)
            start = pos
            value, pos = _token_or_quoted(header, pos, name)
            # RFC 6455 9.1: a quoted value must still be a valid token.
            if header[start] == '"' and _TOKEN.fullmatch(value) is None:
                raise InvalidHeaderFormat(name, "invalid quoted value", header, start)
        params.append((param, value))


def parse_extension_list(
    header: str, name: str = "Sec-WebSocket-Extensions"
) -> list[ExtensionHeader]:
    """Parse ``Sec-WebSocket-Extensions`` into ``(name, [(param, value)])`` items."""
    return _parse_list(header, name, _extension)


def build_extension_list(extensions: Iterable[ExtensionHeader]) -> str:
    """Build a ``Sec-WebSocket-Extensions`` value from ``(name, params)`` items."""
    items = []
    for ext_name, params in extensions:
        parts = [ext_name]
        parts += [p if v is None else f"{p}={v}" for p, v in params]
        items.append("; ".join(parts))
    return ", ".join(items)


def parse_subprotocol_list(header: str, name: str = "Sec-WebSocket-Protocol") -> list[str]:
    """Parse ``Sec-WebSocket-Protocol``: a list of tokens (RFC 6455 section 4.3)."""
    return _parse_list(header, name, _token)


def build_token_list(tokens: Iterable[str]) -> str:
    """Build a comma-separated list of tokens."""
    return ", ".join(tokens)
