"""The public API: what ``import portside`` offers, for code written for websockets."""

from __future__ import annotations

import portside


def test_all_names_exist() -> None:
    for name in portside.__all__:
        assert hasattr(portside, name), name


def test_all_is_sorted_and_unique() -> None:
    assert len(set(portside.__all__)) == len(portside.__all__)


def test_websockets_style_names() -> None:
    # Code written for websockets uses these through ``import portside as websockets``.
    for name in (
        "serve",
        "connect",
        "unix_serve",
        "unix_connect",
        "ConnectionClosed",
        "ConnectionClosedOK",
        "ConnectionClosedError",
        "InvalidHandshake",
        "InvalidStatus",
        "InvalidURI",
        "PayloadTooBig",
        "ProtocolError",
        "WebSocketException",
        "Headers",
        "Request",
        "Response",
        "State",
    ):
        assert name in portside.__all__, name
    assert portside.exceptions.ConnectionClosed is portside.ConnectionClosed


def test_version() -> None:
    assert portside.__version__.count(".") == 2


def test_hub() -> None:
    import portside.hub

    assert portside.Hub is portside.hub.Hub
