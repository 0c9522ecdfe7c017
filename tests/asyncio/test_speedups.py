"""ConnectionBase in C and its pure-Python twin, run through the same cases.

Every test taking the ``base`` fixture runs once per implementation; the C one is
skipped when the extension is not built (failed under ``CI=true``: see
``tests/needs.py``). A fake protocol and fake futures record
every call, in one log, so that tests check the order of the calls too.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import os
import pathlib
import re
import subprocess
import sys
import weakref
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any, cast

import pytest

from portside.asyncio import _pyspeedups
from portside.protocol.events import Ping
from tests.needs import needs_speedups


def load_c() -> ModuleType | None:
    try:
        return importlib.import_module("portside.asyncio._speedups")
    except ImportError:
        return None


C_MODULE = load_c()
PY_BASE: type[Any] = _pyspeedups.ConnectionBase
C_BASE: type[Any] | None = getattr(C_MODULE, "ConnectionBase", None)
needs_c = needs_speedups(C_BASE is not None)


@pytest.fixture(
    params=[
        pytest.param(PY_BASE, id="python"),
        pytest.param(C_BASE, id="c", marks=needs_c),
    ]
)
def base(request: pytest.FixtureRequest) -> type[Any]:
    return cast(type[Any], request.param)


class Event:
    """A control event: anything but exactly bytes or str."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Event({self.name!r})"


class FakeProtocol:
    """Returns preset events from buffer_updated; ``_out`` as Protocol has it."""

    def __init__(self, log: list[Any], events: Any = None, out: list[bytes] | None = None):
        self.log = log
        self.events = [] if events is None else events
        self._out = [] if out is None else out
        self.fail: BaseException | None = None

    def buffer_updated(self, nbytes: int) -> Any:
        self.log.append(("buffer_updated", nbytes))
        if self.fail is not None:
            raise self.fail
        return self.events

    def data_to_send(self) -> list[bytes]:
        self.log.append(("data_to_send",))
        out, self._out = self._out, []
        return out


class FakeFuture:
    """done() and set_result(), as asyncio.Future has them."""

    def __init__(self, log: list[Any], name: str = "waiter", done: bool = False) -> None:
        self.log = log
        self.name = name
        self.is_done = done
        self.fail_done: BaseException | None = None
        self.fail_set: BaseException | None = None

    def done(self) -> Any:
        self.log.append((self.name, "done"))
        if self.fail_done is not None:
            raise self.fail_done
        return self.is_done

    def set_result(self, result: Any) -> None:
        self.log.append((self.name, "set_result", result))
        if self.fail_set is not None:
            raise self.fail_set
        self.is_done = True


_subclasses: dict[type[Any], type[Any]] = {}


def connection_class(base: type[Any]) -> type[Any]:
    """A subclass recording the calls, without ``__slots__`` like Connection."""
    if base not in _subclasses:

        class Recorder(base):  # type: ignore[misc]
            def __init__(self, protocol: Any, log: list[Any]) -> None:
                self.protocol = protocol
                self._waiter = None
                self._handshaking = False
                self.log = log
                self.fail: dict[str, BaseException] = {}
                self.hooks: dict[str, Any] = {}

            def _record(self, *call: Any) -> None:
                self.log.append(call)
                hook = self.hooks.get(call[0])
                if hook is not None:
                    hook(*call[1:])
                if call[0] in self.fail:
                    raise self.fail[call[0]]

            def _receive_handshake(self, nbytes: int, /) -> Any:
                self._record("_receive_handshake", nbytes)
                return "ignored"

            def _enqueue(self, message: Any, /) -> Any:
                self._record("_enqueue", message)
                return "ignored"

            def _on_event(self, event: Any, alone: bool, /) -> Any:
                self._record("_on_event", event, alone)
                return "ignored"

            def _write_all(self, frames: list[bytes], /) -> Any:
                self._record("_write_all", frames)
                return "ignored"

        _subclasses[base] = Recorder
    return _subclasses[base]


def new_connection(base: type[Any], events: Any = None, out: list[bytes] | None = None) -> Any:
    log: list[Any] = []
    return connection_class(base)(FakeProtocol(log, events, out), log)


def test_members_match_the_twin() -> None:
    assert sorted(PY_BASE.__slots__) == [
        "_fragmenting",
        "_handshaking",
        "_messages",
        "_pending_error",
        "_reading_paused",
        "_waiter",
        "_write_barrier",
        "_write_paused",
        "bytes_received",
        "bytes_sent",
        "loop",
        "messages_received",
        "messages_sent",
        "protocol",
        "transport",
    ]
    if C_BASE is not None:
        members = {
            name
            for name, value in vars(C_BASE).items()
            if type(value).__name__ == "member_descriptor"
        }
        # _write_barrier reads None where C holds NULL: a getter and a setter.
        assert members == set(PY_BASE.__slots__) - {"_write_barrier"}
        assert type(vars(C_BASE)["_write_barrier"]).__name__ == "getset_descriptor"


def test_counters_of_bytes_and_messages_received(base: type[Any]) -> None:
    connection = new_connection(base, ["text", b"binary", Ping(b"")])
    connection.buffer_updated(42)
    assert (connection.bytes_received, connection.messages_received) == (42, 2)
    connection._handshaking = True
    connection.buffer_updated(100)  # the opening handshake's bytes: not counted
    assert (connection.bytes_received, connection.messages_received) == (42, 2)
    assert (connection.bytes_sent, connection.messages_sent) == (0, 0)


def test_message_to_the_waiter(base: type[Any]) -> None:
    connection = new_connection(base, ["text"])
    connection._waiter = waiter = FakeFuture(connection.log)
    assert connection.buffer_updated(42) is None
    assert connection.log == [
        ("buffer_updated", 42),
        ("waiter", "done"),
        ("waiter", "set_result", "text"),
    ]
    assert connection._waiter is None
    assert waiter.is_done


def test_message_without_waiter_is_queued(base: type[Any]) -> None:
    connection = new_connection(base, [b"binary"])
    assert connection.buffer_updated(7) is None
    assert connection.log == [("buffer_updated", 7), ("_enqueue", b"binary")]
    assert connection._waiter is None


def test_message_for_a_cancelled_waiter_is_queued(base: type[Any]) -> None:
    connection = new_connection(base, ["text"])
    connection._waiter = FakeFuture(connection.log, done=True)
    connection.buffer_updated(1)
    assert connection.log == [("buffer_updated", 1), ("waiter", "done"), ("_enqueue", "text")]
    assert connection._waiter is None


def test_done_result_truthiness(base: type[Any]) -> None:
    # done() need not return a bool: its truth value counts.
    for done, queued in [(0, False), ("", False), (1, True), ([0], True)]:
        connection = new_connection(base, ["m"])
        connection._waiter = FakeFuture(connection.log, done=cast(bool, done))
        connection.buffer_updated(1)
        assert (("_enqueue", "m") in connection.log) == queued, done


def test_several_messages_in_one_read(base: type[Any]) -> None:
    connection = new_connection(base, ["one", b"two", "three"])
    connection._waiter = FakeFuture(connection.log)
    connection.buffer_updated(100)
    assert connection.log == [
        ("buffer_updated", 100),
        ("waiter", "done"),
        ("waiter", "set_result", "one"),
        ("_enqueue", b"two"),
        ("_enqueue", "three"),
    ]


def test_control_events(base: type[Any]) -> None:
    ping, pong = Event("ping"), Event("pong")
    connection = new_connection(base, [ping])
    connection.buffer_updated(1)
    assert connection.log == [("buffer_updated", 1), ("_on_event", ping, True)]
    connection = new_connection(base, ["a", ping, b"b", pong])
    connection._waiter = FakeFuture(connection.log)
    connection.buffer_updated(2)
    assert connection.log == [
        ("buffer_updated", 2),
        ("waiter", "done"),
        ("waiter", "set_result", "a"),
        ("_on_event", ping, False),
        ("_enqueue", b"b"),
        ("_on_event", pong, False),
    ]


def test_only_exact_bytes_and_str_are_messages(base: type[Any]) -> None:
    class Text(str):
        pass

    others = [Text("sub"), bytearray(b"ba"), memoryview(b"mv"), None, 1, ValueError("e")]
    connection = new_connection(base, list(others))
    connection._waiter = FakeFuture(connection.log)
    connection.buffer_updated(3)
    assert connection.log == [("buffer_updated", 3)] + [
        ("_on_event", other, False) for other in others
    ]
    assert isinstance(connection._waiter, FakeFuture)


def test_no_events(base: type[Any]) -> None:
    connection = new_connection(base, [])
    connection._waiter = waiter = FakeFuture(connection.log)
    connection.buffer_updated(0)
    assert connection.log == [("buffer_updated", 0)]
    assert connection._waiter is waiter


def test_nbytes_passed_as_is(base: type[Any]) -> None:
    for nbytes in (0, -1, 2**100, "x", None):
        connection = new_connection(base)
        connection.buffer_updated(nbytes)
        assert connection.log == [("buffer_updated", nbytes)]
        # Counted only when it is a byte count.
        counted = isinstance(nbytes, int) and 0 <= nbytes < 2**63
        assert connection.bytes_received == (nbytes if counted else 0)
        connection._handshaking = True
        connection.buffer_updated(nbytes)
        assert connection.log[-1] == ("_receive_handshake", nbytes)


def test_pending_output_is_written(base: type[Any]) -> None:
    ping = Event("ping")
    connection = new_connection(base, [ping, "m"], out=[b"pong"])
    connection.buffer_updated(5)
    assert connection.log == [
        ("buffer_updated", 5),
        ("_on_event", ping, False),
        ("_enqueue", "m"),
        ("data_to_send",),
        ("_write_all", [b"pong"]),
    ]
    assert connection.protocol._out == []
    # _out is tested for truth only; data_to_send() decides what is written.
    falsy: list[object] = [[], (), 0, None, ""]
    for out in falsy:
        connection = new_connection(base, [])
        connection.protocol._out = out
        connection.buffer_updated(1)
        assert connection.log == [("buffer_updated", 1)], out
    connection = new_connection(base, [])
    connection.protocol._out = "yes"
    connection.buffer_updated(1)
    assert connection.log == [("buffer_updated", 1), ("data_to_send",), ("_write_all", "yes")]


def test_output_produced_by_a_callback_is_written(base: type[Any]) -> None:
    connection = new_connection(base, [Event("close")])
    protocol = connection.protocol
    connection.hooks["_on_event"] = lambda event, alone: protocol._out.append(b"close")
    connection.buffer_updated(1)
    assert connection.log[-1] == ("_write_all", [b"close"])


def test_handshake_delegation(base: type[Any]) -> None:
    connection = new_connection(base, ["not read"], out=[b"not written"])
    connection._handshaking = True
    connection._waiter = waiter = FakeFuture(connection.log)
    assert connection.buffer_updated(9) is None
    assert connection.log == [("_receive_handshake", 9)]
    assert connection._waiter is waiter
    # The handshake ends: the next read goes to the protocol.
    connection.hooks["_receive_handshake"] = lambda nbytes: setattr(
        connection, "_handshaking", False
    )
    connection.buffer_updated(1)
    assert connection.log[-1] == ("_receive_handshake", 1)
    connection.buffer_updated(2)
    assert ("buffer_updated", 2) in connection.log


def test_callbacks_see_and_change_state(base: type[Any]) -> None:
    connection = new_connection(base, ["a", "b", "c"])
    log = connection.log
    first, second = FakeFuture(log, "first"), FakeFuture(log, "second")
    connection._waiter = first

    def set_result(result: Any) -> None:
        log.append(("first", "set_result", result))
        # recv() returns, and the handler calls recv() again at once.
        connection._waiter = second

    first.set_result = set_result  # type: ignore[method-assign]
    connection.buffer_updated(1)
    assert log == [
        ("buffer_updated", 1),
        ("first", "done"),
        ("first", "set_result", "a"),
        ("second", "done"),
        ("second", "set_result", "b"),
        ("_enqueue", "c"),
    ]


def test_events_added_while_iterating(base: type[Any]) -> None:
    # The twin iterates over the list itself: events appended by a callback are
    # handled too, and len(events) is read when each control event comes.
    first, later = Event("first"), Event("later")
    events: list[Any] = [first]
    connection = new_connection(base, events)
    connection.hooks["_on_event"] = lambda event, alone: (
        events.extend(["m", later]) if event is first else None
    )
    connection.buffer_updated(1)
    assert connection.log == [
        ("buffer_updated", 1),
        ("_on_event", first, True),
        ("_enqueue", "m"),
        ("_on_event", later, False),
    ]


def test_protocol_replaced_by_a_callback(base: type[Any]) -> None:
    # _out and data_to_send() are those of the protocol that gave the events.
    connection = new_connection(base, [Event("e")], out=[b"old"])
    old = connection.protocol
    new = FakeProtocol(connection.log, out=[b"new"])
    connection.hooks["_on_event"] = lambda event, alone: setattr(connection, "protocol", new)
    connection.buffer_updated(1)
    assert connection.log[-1] == ("_write_all", [b"old"])
    assert connection.protocol is new
    assert old._out == [] and new._out == [b"new"]


def test_events_from_any_iterable(base: type[Any]) -> None:
    connection = new_connection(base, ("a", b"b"))
    connection.buffer_updated(1)
    assert connection.log == [("buffer_updated", 1), ("_enqueue", "a"), ("_enqueue", b"b")]

    def generate() -> Iterable[Any]:
        yield "x"
        yield Event("no len")

    connection = new_connection(base, generate())
    # A control event needs len(events).
    with pytest.raises(TypeError, match="len"):
        connection.buffer_updated(1)
    assert connection.log == [("buffer_updated", 1), ("_enqueue", "x")]
    connection = new_connection(base, None)
    connection.protocol.events = 42
    with pytest.raises(TypeError):
        connection.buffer_updated(1)


@pytest.mark.parametrize("where", ["_enqueue", "_on_event", "_write_all", "_receive_handshake"])
def test_exceptions_from_the_subclass_propagate(base: type[Any], where: str) -> None:
    connection = new_connection(base, [b"m", Event("e"), "n"], out=[b"x"])
    connection._handshaking = where == "_receive_handshake"
    connection.fail[where] = KeyError(where)
    with pytest.raises(KeyError, match=where):
        connection.buffer_updated(1)
    assert connection.log[-1][0] == where  # nothing happened after the failure


def test_exceptions_from_the_waiter_propagate(base: type[Any]) -> None:
    for attribute in ("fail_done", "fail_set"):
        connection = new_connection(base, ["m", "n"], out=[b"x"])
        connection._waiter = waiter = FakeFuture(connection.log)
        setattr(waiter, attribute, asyncio.InvalidStateError(attribute))
        with pytest.raises(asyncio.InvalidStateError, match=attribute):
            connection.buffer_updated(1)
        # The waiter left _waiter before the failing call; nothing came after.
        assert connection._waiter is None
        assert connection.log[-1][0] == "waiter"
        assert ("_enqueue", "n") not in connection.log


def test_exceptions_from_the_protocol_propagate(base: type[Any]) -> None:
    connection = new_connection(base, ["m"])
    connection.protocol.fail = MemoryError("buffer_updated")
    with pytest.raises(MemoryError):
        connection.buffer_updated(1)
    assert connection.log == [("buffer_updated", 1)]

    class BadProtocol(FakeProtocol):
        def data_to_send(self) -> list[bytes]:
            raise KeyError("data_to_send")

    connection.protocol = BadProtocol(connection.log, out=[b"x"])
    with pytest.raises(KeyError, match="data_to_send"):
        connection.buffer_updated(1)

    class NoOut:
        def buffer_updated(self, nbytes: int) -> list[Any]:
            return ["m"]

    connection = new_connection(base)
    connection.protocol = NoOut()
    with pytest.raises(AttributeError, match="_out"):
        connection.buffer_updated(1)
    assert connection.log == [("_enqueue", "m")]

    class BadTruth:
        def __bool__(self) -> bool:
            raise ZeroDivisionError

    connection = new_connection(base, [])
    connection.protocol._out = BadTruth()
    with pytest.raises(ZeroDivisionError):
        connection.buffer_updated(1)
    connection = new_connection(base, ["m"])
    connection._waiter = waiter = FakeFuture(connection.log)
    waiter.is_done = BadTruth()  # type: ignore[assignment]
    with pytest.raises(ZeroDivisionError):
        connection.buffer_updated(1)
    assert connection.log[-1] == ("waiter", "done")


def test_call_signature(base: type[Any]) -> None:
    connection = new_connection(base)
    with pytest.raises(TypeError):
        connection.buffer_updated()
    with pytest.raises(TypeError):
        connection.buffer_updated(1, 2)
    with pytest.raises(TypeError):
        connection.buffer_updated(nbytes=1)
    with pytest.raises(TypeError):
        base(1)
    assert connection.log == []


def test_base_methods_raise_not_implemented(base: type[Any]) -> None:
    class Bare(base):  # type: ignore[misc]
        pass

    log: list[Any] = []
    connection = Bare()
    connection.protocol = FakeProtocol(log, ["m"])
    connection._waiter = None
    connection._handshaking = False
    with pytest.raises(NotImplementedError):
        connection.buffer_updated(1)
    connection.protocol.events = [Event("e")]
    with pytest.raises(NotImplementedError):
        connection.buffer_updated(1)
    connection.protocol.events = []
    connection.protocol._out = [b"x"]
    with pytest.raises(NotImplementedError):
        connection.buffer_updated(1)
    connection._handshaking = True
    with pytest.raises(NotImplementedError):
        connection.buffer_updated(1)


def test_attributes_round_trip(base: type[Any]) -> None:
    values: dict[str, list[object]] = {
        "protocol": [FakeProtocol([]), None, 1],
        "_waiter": [None, FakeFuture([]), "x"],
        "_handshaking": [True, False],
    }
    for connection in (base(), connection_class(base)(None, [])):
        for name, choices in values.items():
            for value in choices:
                setattr(connection, name, value)
                assert getattr(connection, name) is value, name


@pytest.mark.parametrize("name", ["protocol", "_waiter"])
def test_unset_attributes(base: type[Any], name: str) -> None:
    connection = base()
    with pytest.raises(AttributeError, match=name):
        getattr(connection, name)
    connection = new_connection(base, ["m"])
    delattr(connection, name)
    with pytest.raises(AttributeError, match=name):
        getattr(connection, name)
    with pytest.raises(AttributeError, match=name):
        connection.buffer_updated(1)
    # Not needed while handshaking, nor without messages.
    connection._handshaking = True
    connection.buffer_updated(1)
    if name == "_waiter":
        connection._handshaking = False
        connection.protocol.events = [Event("e")]
        connection.buffer_updated(1)


@needs_c
def test_c_handshaking_is_a_bool() -> None:
    """Where the C member is stricter than the twin's slot.

    ``_handshaking`` is a T_BOOL member: it takes True or False only, cannot be
    deleted and reads False before being set (the twin raises AttributeError).
    portside only assigns True and False to it (checked by
    tests/protocol/test_speedups.py::test_portside_assigns_bools_to_bool_members).
    """
    assert C_BASE is not None
    connection = C_BASE()
    assert connection._handshaking is False
    with pytest.raises(AttributeError):
        PY_BASE()._handshaking  # noqa: B018
    for value in (1, 0, None, "yes"):
        with pytest.raises(TypeError):
            connection._handshaking = value
    with pytest.raises(TypeError):
        del connection._handshaking


class FakeTransport:
    """write(), as asyncio's transports have it."""

    def __init__(self, log: list[Any]) -> None:
        self.log = log

    def write(self, data: bytes) -> None:
        self.log.append(("write", data))


def test_write_barrier_is_none_until_set(base: type[Any]) -> None:
    def barrier() -> None:
        pass

    for connection in (base(), connection_class(base)(None, [])):
        assert connection._write_barrier is None
        connection._write_barrier = barrier
        assert connection._write_barrier is barrier
        connection._write_barrier = None
        assert connection._write_barrier is None


def test_write_frame_calls_the_write_barrier_first(base: type[Any]) -> None:
    log: list[Any] = []
    connection = new_connection(base)
    connection.transport = FakeTransport(log)
    connection._write_frame(b"alone")
    connection._write_barrier = lambda: log.append(("barrier",))
    connection._write_frame(b"frame")
    assert log == [("write", b"alone"), ("barrier",), ("write", b"frame")]
    # Not for a wrong argument; before looking for the transport.
    log.clear()
    with pytest.raises(TypeError, match="takes bytes"):
        connection._write_frame("text")
    assert log == []
    del connection.transport
    with pytest.raises(AttributeError, match="transport"):
        connection._write_frame(b"frame")
    assert log == [("barrier",)]


def test_a_write_barrier_that_raises_stops_the_write(base: type[Any]) -> None:
    log: list[Any] = []
    connection = new_connection(base)
    connection.transport = FakeTransport(log)

    def barrier() -> None:
        raise ValueError("barrier")

    connection._write_barrier = barrier
    with pytest.raises(ValueError, match="barrier"):
        connection._write_frame(b"frame")
    assert log == []


def test_a_write_barrier_may_replace_itself(base: type[Any]) -> None:
    log: list[Any] = []
    connection = new_connection(base)
    connection.transport = FakeTransport(log)

    def barrier() -> None:
        # The connection held the last reference to the running function.
        connection._write_barrier = None
        log.append(("barrier",))

    connection._write_barrier = barrier
    reference = weakref.ref(barrier)
    del barrier
    connection._write_frame(b"one")
    connection._write_frame(b"two")
    assert reference() is None
    assert log == [("barrier",), ("write", b"one"), ("write", b"two")]


def test_write_barrier_does_not_leak_references(base: type[Any]) -> None:
    log: list[Any] = []
    connection = new_connection(base)
    connection.transport = FakeTransport(log)
    frame = b"frame" + bytes(10)

    def barrier() -> None:
        log.clear()

    def failing() -> None:
        raise ValueError("barrier")

    refs = [sys.getrefcount(x) for x in (frame, barrier, failing)]
    for _ in range(50):
        connection._write_barrier = barrier
        connection._write_frame(frame)
        assert connection._write_barrier is barrier
        connection._write_barrier = failing
        with pytest.raises(ValueError, match="barrier"):
            connection._write_frame(frame)
        connection._write_barrier = None
    log.clear()
    assert [sys.getrefcount(x) for x in (frame, barrier, failing)] == refs


@needs_c
def test_c_write_barrier_cannot_be_deleted() -> None:
    """Set it to None instead; the twin's slot can be deleted (portside never does)."""
    assert C_BASE is not None
    connection = C_BASE()
    with pytest.raises(TypeError, match="set it to None"):
        del connection._write_barrier
    assert connection._write_barrier is None


def test_subclass_with_buffered_protocol(base: type[Any]) -> None:
    # As Connection: a second base with __slots__ = (), no __slots__ of its own.
    class Connection(base, asyncio.BufferedProtocol):  # type: ignore[misc]
        def get_buffer(self, sizehint: int) -> memoryview:
            return memoryview(bytearray(1))

        def _enqueue(self, message: Any) -> None:
            self.queued.append(message)

    assert Connection.buffer_updated is base.buffer_updated
    connection = Connection()
    connection.queued = []
    connection.protocol = FakeProtocol([], ["m"])
    connection._waiter = None
    connection._handshaking = False
    # An instance attribute, as Connection.__init__ sets get_buffer.
    connection.get_buffer = connection.protocol.buffer_updated  # type: ignore[method-assign]
    connection.buffer_updated(1)
    assert connection.queued == ["m"]
    assert isinstance(connection, asyncio.BufferedProtocol)
    reference = weakref.ref(connection)
    assert "queued" in vars(connection)
    del connection
    gc.collect()
    assert reference() is None


def test_cycles_are_collected(base: type[Any]) -> None:
    for name in ("protocol", "_waiter", "_write_barrier"):
        connection = new_connection(base)
        setattr(connection, name, [connection])  # a cycle through the member only
        reference = weakref.ref(connection)
        del connection
        gc.collect()
        assert reference() is None, name


def test_does_not_leak_references(base: type[Any]) -> None:
    message, event = b"message" + bytes(10), Event("e")
    events = [message, event]
    connection = new_connection(base, events, out=[])
    connection.log = connection.protocol.log = []
    waiter = FakeFuture([])
    protocol = connection.protocol
    refs = [sys.getrefcount(x) for x in (message, event, events, waiter, protocol)]
    for _ in range(50):
        connection._waiter = waiter
        waiter.is_done = False
        connection.buffer_updated(1)
        waiter.log.clear()
        connection.log.clear()
    connection._waiter = None
    assert [sys.getrefcount(x) for x in (message, event, events, waiter, protocol)] == refs


async def test_real_future_wakes_the_receiver(base: type[Any]) -> None:
    loop = asyncio.get_running_loop()
    connection = new_connection(base, ["hello", b"world"])
    waiter: asyncio.Future[Any] = loop.create_future()
    connection._waiter = waiter
    connection.buffer_updated(10)
    assert await waiter == "hello"
    assert connection.log[-1] == ("_enqueue", b"world")
    cancelled: asyncio.Future[Any] = loop.create_future()
    cancelled.cancel()
    connection._waiter = cancelled
    connection.buffer_updated(10)
    assert connection.log[-2:] == [("_enqueue", "hello"), ("_enqueue", b"world")]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("1", "python"),
        ("0", "python" if C_BASE is None else "c"),
        ("", "python" if C_BASE is None else "c"),
    ],
)
def test_no_speedups_environment_variable(value: str, expected: str) -> None:
    code = (
        "from portside.asyncio import _pyspeedups, speedups\n"
        "from portside.asyncio.connection import Connection\n"
        "same = speedups.ConnectionBase is _pyspeedups.ConnectionBase\n"
        "assert Connection.__mro__[1] is speedups.ConnectionBase\n"
        "print(speedups.IMPLEMENTATION, same)\n"
    )
    env = dict(os.environ, PORTSIDE_NO_SPEEDUPS=value)
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.split() == [expected, str(expected == "python")]


def test_the_header_lists_every_c_file() -> None:
    # One file per concern: _speedups.h says which holds what, and setup.py
    # builds every _speedups_*.c into the one extension.
    package = pathlib.Path(_pyspeedups.__file__).parent
    header = (package / "_speedups.h").read_text()
    sources = sorted(path.name for path in package.glob("_speedups_*.c"))
    assert len(sources) > 5
    listed = sorted(re.findall(r"^ \*   (_speedups_\w+\.c) ", header, re.MULTILINE))
    assert listed == sources


@pytest.mark.parametrize(
    ("name", "arguments"),
    [("_receive_handshake", 1), ("_enqueue", 1), ("_on_event", 2), ("_write_all", 1)],
)
def test_base_methods_check_their_arguments(base: type[Any], name: str, arguments: int) -> None:
    method = getattr(base(), name)
    with pytest.raises(TypeError):
        method()
    with pytest.raises(TypeError):
        method(*range(arguments + 1))
    with pytest.raises(NotImplementedError):
        method(*range(arguments))


def test_transport_methods_check_their_arguments(base: type[Any]) -> None:
    log: list[Any] = []
    connection = new_connection(base)
    connection.transport = FakeTransport(log)
    calls: list[Callable[[], object]] = [
        lambda: connection._write_frame(),
        lambda: connection._write_frame(b"one", b"two"),
        lambda: connection._write_frame(frame=b"frame"),
        lambda: connection._hook_transport(True),
        lambda: connection._unhook_transport(True),
    ]
    for call in calls:
        with pytest.raises(TypeError):
            call()
    assert log == []
    assert connection._hook_transport() is False  # a transport of no known loop
    assert connection._unhook_transport() is None


# The C recv() on a recording connection: the Waiter it waits on, met by
# buffer_updated() in the cases a real connection makes rare.


class FakeLoop:
    """call_soon(), as a loop has it: recorded, or failing."""

    def __init__(self, log: list[Any]) -> None:
        self.log = log
        self.fail: BaseException | None = None

    def call_soon(self, callback: Any, *args: Any, context: Any = None) -> None:
        self.log.append(("call_soon", callback, *args))
        if self.fail is not None:
            raise self.fail


def receiving(events: Any = None) -> Any:
    """A recording C connection that can wait in recv() (loop, queue, protocol set)."""
    assert C_BASE is not None
    connection = new_connection(C_BASE, events)
    connection.loop = FakeLoop(connection.log)
    connection._messages = None
    connection._pending_error = None
    connection.protocol._reading = True
    return connection


def waiting(connection: Any) -> tuple[Any, Any]:
    """recv() stepped until it waits: the operation and its Waiter."""
    operation = connection.recv()
    waiter = operation.send(None)
    assert connection._waiter is waiter
    assert type(waiter).__name__ == "Waiter"
    return operation, waiter


@needs_c
def test_c_recv_waits_on_a_waiter_of_its_own() -> None:
    connection = receiving(["message"])
    operation, waiter = waiting(connection)
    connection.buffer_updated(1)
    assert connection._waiter is None
    assert waiter.result() == "message"
    with pytest.raises(StopIteration) as info:
        operation.send(None)
    assert info.value.value == "message"


@needs_c
def test_c_two_waiters_finished_in_one_read() -> None:
    # The first recv() returns and the next one waits, all within one read
    # (not what a task does, which resumes later): both waiters are woken.
    ping = Event("ping")
    connection = receiving(["one", ping, "two", "three"])
    first, first_waiter = waiting(connection)
    woken: list[Any] = []
    first_waiter.add_done_callback(woken.append)
    second: list[Any] = []

    def recv_again(event: Any, alone: bool) -> None:
        with pytest.raises(StopIteration):
            first.send(None)
        second.extend(waiting(connection))

    connection.hooks["_on_event"] = recv_again
    connection.buffer_updated(1)
    operation, waiter = second
    assert waiter is not first_waiter
    # The first waiter's callback, scheduled when the second finished; the
    # second woken at the end of the read, without callbacks.
    assert ("call_soon", woken.append, first_waiter) in connection.log
    assert connection.log[-1] == ("_enqueue", "three")
    with pytest.raises(StopIteration) as info:
        operation.send(None)
    assert info.value.value == "two"


@needs_c
def test_c_message_for_a_cancelled_waiter_is_queued() -> None:
    connection = receiving(["kept"])
    operation, waiter = waiting(connection)
    assert waiter.cancel()
    connection.buffer_updated(1)
    assert connection.log[-1] == ("_enqueue", "kept")
    assert connection._waiter is None
    with pytest.raises(asyncio.CancelledError):
        operation.send(None)


@needs_c
def test_c_failing_wakeup_propagates() -> None:
    connection = receiving(["message"])
    _, waiter = waiting(connection)

    def wakeup(future: Any) -> None:
        raise ValueError("wakeup")

    waiter.add_done_callback(wakeup)
    with pytest.raises(ValueError, match="wakeup"):
        connection.buffer_updated(1)
    assert waiter.result() == "message"


@needs_c
@pytest.mark.parametrize("call_soon_fails", [False, True], ids=["scheduled", "unschedulable"])
def test_c_waiter_still_woken_after_an_error_in_the_same_read(
    call_soon_fails: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A message finished the waiter, then _enqueue() failed: the waiter's
    # callbacks are scheduled all the same, and the error goes on. If even
    # that fails, it is reported as unraisable.
    connection = receiving(["first", "second"])
    _, waiter = waiting(connection)
    waiter.add_done_callback(str)
    connection.fail["_enqueue"] = KeyError("enqueue")
    if call_soon_fails:
        connection.loop.fail = RuntimeError("loop closed")
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with pytest.raises(KeyError, match="enqueue"):
        connection.buffer_updated(1)
    assert ("call_soon", str, waiter) in connection.log
    assert waiter.result() == "first"
    if call_soon_fails:
        (report,) = unraisable
        assert isinstance(report.exc_value, RuntimeError)
        assert report.object is waiter
    else:
        assert unraisable == []


@needs_c
def test_c_recv_error_paths() -> None:
    # recv()'s fall-back to the Python method (decode=...), which a bare
    # recording connection lacks.
    connection = receiving()
    with pytest.raises(AttributeError, match="_recv_in_python"):
        connection.recv(decode=True)
    with pytest.raises(ZeroDivisionError):
        connection.recv(_iterating=BadTruth())

    # A queue without a length.
    connection._messages = object()
    with pytest.raises(TypeError):
        connection.recv().send(None)
    connection._messages = None

    # protocol._reading read by name from a protocol of another class.
    class NotReading(FakeProtocol):
        @property
        def _reading(self) -> bool:
            raise ZeroDivisionError

    connection.protocol = NotReading(connection.log)
    with pytest.raises(ZeroDivisionError):
        connection.recv().send(None)


@needs_c
def test_c_message_requeued_in_vain_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    # recv() closed after its message came: the message goes back to the
    # queue through _requeue(), which this connection lacks. The close goes on.
    connection = receiving(["message"])
    operation, _ = waiting(connection)
    connection.buffer_updated(1)
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    operation.close()
    (report,) = unraisable
    assert isinstance(report.exc_value, AttributeError)
    assert "_requeue" in str(report.exc_value)
    assert connection._waiter is None


@needs_c
def test_c_read_ready_without_a_transport() -> None:
    connection = new_connection(cast(type[Any], C_BASE))
    with pytest.raises(AttributeError, match="transport"):
        connection._read_ready()


class BadTruth:
    def __bool__(self) -> bool:
        raise ZeroDivisionError
