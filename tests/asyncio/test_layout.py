"""asyncio's private transport layout changed: the public path, one debug line, no crash.

The C accelerator reads and writes on the socket of asyncio's selector
transport itself, reading the transport's private state (``_conn_lost``,
``_eof``, ``_buffer``, ``_empty_waiter`` in its instance dict, ``_sock_fd``,
``_read_ready_cb``). It checks that layout when it takes the transport
(``_hook_transport()``); these tests change it as a new Python release might,
and the connection must work through the transport's own methods instead,
with one debug log line for the process.
"""

from __future__ import annotations

import logging
import os
from asyncio import selector_events
from typing import Any

import pytest

import portside
from portside.asyncio import connection as connection_module
from portside.asyncio.speedups import IMPLEMENTATION
from tests.asyncio.helpers import echo, running, url

pytestmark = [
    pytest.mark.skipif(IMPLEMENTATION != "c", reason="the C accelerator's fast path"),
    pytest.mark.skipif(
        os.environ.get("PORTSIDE_TEST_LOOP") == "uvloop", reason="asyncio's selector loop only"
    ),
]

Transport: Any = getattr(selector_events, "_SelectorSocketTransport")  # noqa: B009 - private


CHANGES: dict[str, Any] = {
    # State the accelerator reads from the instance dict, now on the class.
    "_conn_lost": 0,
    "_eof": False,
    "_empty_waiter": None,
    "_buffer": None,
}


@pytest.mark.parametrize("name", sorted(CHANGES))
async def test_changed_transport_falls_back_to_its_own_methods(
    name: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(Transport, name, CHANGES[name], raising=False)
    monkeypatch.setattr(connection_module, "_transport_noted", False)
    caplog.set_level(logging.DEBUG, "portside")
    async with running(echo) as server, portside.connect(url(server)) as ws:
        for message in ("text", b"binary", bytes(100_000)):
            await ws.send(message)
            assert await ws.recv() == message
        (connection,) = server.connections
        assert connection._direct_io == 0, "the changed transport was hooked"
        assert ws._direct_io == 0
    lines = [r for r in caplog.records if "not laid out as the C accelerator expects" in r.message]
    assert len(lines) == 1, caplog.text
    assert lines[0].levelno == logging.DEBUG


async def test_unchanged_transport_is_hooked(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, "portside")
    async with running(echo) as server, portside.connect(url(server)) as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello"
        (connection,) = server.connections
        assert connection._direct_io != 0
    assert "not laid out" not in caplog.text


async def test_read_ready_callback_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    # A transport that reads some other way than into get_buffer(): left alone.
    original = Transport.set_protocol

    def set_protocol(self: Any, protocol: Any) -> None:
        original(self, protocol)
        own = self._read_ready_cb

        def read_ready() -> None:  # the same reads, through another callable
            own()

        self._read_ready_cb = read_ready

    monkeypatch.setattr(Transport, "set_protocol", set_protocol)
    monkeypatch.setattr(connection_module, "_transport_noted", False)
    async with running(echo) as server, portside.connect(url(server)) as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello"
        (connection,) = server.connections
        assert connection._direct_io == 0
        assert ws._direct_io == 0


async def test_read_ready_callback_renamed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A transport that keeps its read callback under another name, as another
    # Python's might: left alone, with the debug line, not an error.
    original = Transport.set_protocol

    def set_protocol(self: Any, protocol: Any) -> None:
        original(self, protocol)
        self._read_callback = self.__dict__.pop("_read_ready_cb")

    def read_ready(self: Any) -> None:
        self._read_callback()

    monkeypatch.setattr(Transport, "set_protocol", set_protocol)
    monkeypatch.setattr(Transport, "_read_ready", read_ready)
    monkeypatch.setattr(connection_module, "_transport_noted", False)
    caplog.set_level(logging.DEBUG, "portside")
    async with running(echo) as server, portside.connect(url(server)) as ws:
        await ws.send("hello")
        assert await ws.recv() == "hello"
        (connection,) = server.connections
        assert connection._direct_io == 0
        assert ws._direct_io == 0
    assert "not laid out as the C accelerator expects" in caplog.text
