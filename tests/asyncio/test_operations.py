"""recv() and send() as coroutines, stepped by hand and by asyncio.

With the C accelerator they return an ``Operation`` (portside/asyncio/_speedups_operation.c),
without it Python coroutines; the suite runs both ways and these tests hold for
both, so the two behave alike wherever a caller can tell.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, cast

import pytest

import portside
from portside.asyncio.speedups import IMPLEMENTATION
from portside.protocol.client import ClientProtocol
from portside.protocol.server import ServerProtocol
from tests.asyncio.helpers import RawClient, pair, running
from tests.framing import client_frame, server_frame
from tests.needs import needs_speedups

needs_c = needs_speedups(IMPLEMENTATION == "c")


def forget(operation: Coroutine[Any, Any, Any]) -> None:
    """Drop the last reference to an operation never awaited."""
    del operation
    gc.collect()


def step(operation: Coroutine[Any, Any, Any]) -> Any:
    """Step once; return what it awaits, or raise StopIteration with its result."""
    return operation.send(None)


async def test_operations_are_coroutines_for_asyncio() -> None:
    async with pair() as (server_ws, client):
        operation = server_ws.send("task")
        assert asyncio.iscoroutine(operation)
        await asyncio.create_task(operation)
        received = asyncio.create_task(client.recv())
        assert await received == "task"
        await server_ws.send(message="keyword")
        assert await asyncio.wait_for(client.recv(), 10) == "keyword"


async def test_recv_returns_a_queued_message_without_suspending() -> None:
    async def handler(ws: portside.ServerConnection) -> None:
        first = await ws.recv()
        # The three frames came in one write, so the other two wait in the queue.
        operation = ws.recv()
        with pytest.raises(StopIteration) as info:
            step(operation)
        await ws.send(f"{first!s} {info.value.value!s} {await ws.recv()!s}")

    async with running(handler) as server:
        raw = await RawClient.connect(server)
        raw.send(b"".join(client_frame(1, text.encode()) for text in ("a", "b", "c")))
        assert await raw.reader.readexactly(7) == b"\x81\x05a b c"
        await raw.close()


async def test_recv_waits_on_a_future_then_returns() -> None:
    async with pair() as (server_ws, client):
        operation = client.recv()
        future = step(operation)
        assert asyncio.isfuture(future)
        assert client._waiter is future
        await server_ws.send("late")
        # Stepping by hand left the future marked as awaited by a task.
        future._asyncio_future_blocking = False
        await future
        with pytest.raises(StopIteration) as info:
            step(operation)
        assert info.value.value == "late"
        assert client._waiter is None


async def test_exception_thrown_into_a_waiting_recv() -> None:
    async with pair() as (server_ws, client):
        operation = client.recv()
        step(operation)
        with pytest.raises(KeyError, match="thrown"):
            operation.throw(KeyError("thrown"))
        assert client._waiter is None
        with pytest.raises(RuntimeError, match="cannot reuse"):
            step(operation)
        # The message for the abandoned recv() is kept for the next one.
        await server_ws.send("kept")
        assert await client.recv() == "kept"


async def test_closing_a_waiting_recv() -> None:
    async with pair() as (server_ws, client):
        operation = client.recv()
        step(operation)
        operation.close()
        assert client._waiter is None
        operation.close()  # again: nothing to do
        await server_ws.send("kept")
        assert await client.recv() == "kept"


async def test_coroutine_rules() -> None:
    async with pair() as (server_ws, client):
        operation = server_ws.send("x")
        with pytest.raises(TypeError, match="non-None value"):
            operation.send(1)
        with pytest.raises(StopIteration):
            step(operation)
        with pytest.raises(RuntimeError, match="cannot reuse"):
            step(operation)
        assert await client.recv() == "x"

        never_started = server_ws.send("never")
        with pytest.raises(ValueError, match="into a new one"):
            never_started.throw(ValueError("into a new one"))
        with pytest.raises(RuntimeError, match="cannot reuse"):
            step(never_started)

        closed_first = server_ws.recv()
        closed_first.close()
        with pytest.raises(RuntimeError, match="cannot reuse"):
            step(closed_first)


async def test_unawaited_operations_warn_as_coroutines_do() -> None:
    async with pair() as (server_ws, client):
        with pytest.warns(RuntimeWarning, match="'Connection.send' was never awaited"):
            forget(server_ws.send("lost"))
        with pytest.warns(RuntimeWarning, match="'Connection.recv' was never awaited"):
            forget(client.recv())
        # Nothing was sent.
        await server_ws.send("after")
        assert await client.recv() == "after"


def old_throw_signature(nargs: int) -> contextlib.AbstractContextManager[object]:
    """What throw(type, value[, traceback]) warns, as a coroutine's does.

    Python 3.12 deprecates that signature: a DeprecationWarning, then the throw
    (not for more than 3 arguments, refused before).
    """
    if 1 < nargs <= 3 and sys.version_info >= (3, 12):
        return pytest.warns(DeprecationWarning, match=r"\(type, exc, tb\) signature")
    return contextlib.nullcontext()


async def test_throw_forms() -> None:
    async with pair() as (_, client):
        for args, expected in [
            ((KeyError,), KeyError),
            ((KeyError, "value"), KeyError),
            ((KeyError, KeyError("instance")), KeyError),
        ]:
            operation = client.recv()
            step(operation)
            with pytest.raises(expected), old_throw_signature(len(args)):
                operation.throw(*args)
            assert client._waiter is None
        operation = client.recv()
        step(operation)
        with pytest.raises(TypeError), old_throw_signature(2):
            operation.throw(KeyError("instance"), "value")
        with pytest.raises(TypeError):
            operation.throw("not an exception")
        operation.close()


async def test_cancelling_a_fragmented_send_fails_the_connection() -> None:
    sent_first = asyncio.Event()
    never = asyncio.Event()

    async def fragments() -> AsyncIterator[str]:
        yield "first"
        sent_first.set()
        await never.wait()
        yield "never"  # pragma: no cover - cancelled above

    async with pair() as (server_ws, client):
        sending = asyncio.create_task(server_ws.send(fragments()))
        await sent_first.wait()
        sending.cancel()
        with pytest.raises(asyncio.CancelledError):
            await sending
        with pytest.raises(portside.ConnectionClosedError) as info:
            await client.recv()
        assert info.value.code == 1011


@pytest.mark.parametrize(
    "message",
    [
        "",
        "ascii",
        "é non-ASCII",
        "a" * 125,
        "a" * 126,
        "a" * 5000,
        "☕" * 5000,
        b"",
        b"\x00" * 125,
        b"\x01" * 126,
        b"\x02" * 65535,
        b"\x03" * 65536,
        bytearray(b"bytearray"),
        memoryview(b"memoryview"),
    ],
    ids=lambda message: f"{type(message).__name__}-{len(message)}",
)
async def test_server_frames_every_size_and_type(message: Any) -> None:
    async def handler(ws: portside.ServerConnection) -> None:
        await ws.send(message)

    expected = message.encode() if isinstance(message, str) else bytes(message)
    size = len(expected)
    # RFC 6455 5.2: FIN and the opcode, then the length in 7, 7+16 or 7+64 bits.
    first = b"\x81" if isinstance(message, str) else b"\x82"
    if size < 126:
        header = first + bytes([size])
    elif size < 65536:
        header = first + b"\x7e" + size.to_bytes(2, "big")
    else:
        header = first + b"\x7f" + size.to_bytes(8, "big")
    async with running(handler) as server:
        raw = await RawClient.connect(server)
        assert await raw.reader.readexactly(len(header) + size) == header + expected
        await raw.close()


async def test_send_and_recv_argument_errors() -> None:
    async with pair() as (server_ws, client):
        send = cast(Callable[..., Awaitable[None]], server_ws.send)
        with pytest.raises(TypeError):
            send()
        with pytest.raises(TypeError):
            send("a", "b")
        with pytest.raises(TypeError):
            send(other="a")
        with pytest.raises(TypeError):
            await server_ws.send(cast(Any, 42))
        await server_ws.send("still open")
        assert await client.recv() == "still open"


@needs_c
async def test_operation_names() -> None:
    async with pair() as (server_ws, client):
        operation: Any = server_ws.send("named")
        assert operation.__name__ == "send"
        assert operation.__qualname__ == "Connection.send"
        assert "Connection.send" in repr(operation)
        assert operation.cr_running is False
        await operation
        operation = client.recv()
        assert operation.__qualname__ == "Connection.recv"
        assert await operation == "named"
        recv = cast(Callable[..., Any], client.recv)
        with pytest.raises(TypeError):
            recv(True, False)
        with pytest.raises(TypeError):
            recv(other=True)
        iterating = recv(_iterating=True)
        iterating.close()


# The future recv() waits on: asyncio.Future without the accelerator, its Waiter
# with it. Both must behave as asyncio's futures do.


async def waiting_future(client: Any) -> tuple[Coroutine[Any, Any, Any], Any]:
    operation = client.recv()
    future = step(operation)
    future._asyncio_future_blocking = False  # as a task would leave it
    return operation, future


async def test_the_future_recv_waits_on() -> None:
    async with pair() as (server_ws, client):
        operation, future = await waiting_future(client)
        assert asyncio.isfuture(future)
        assert future.get_loop() is asyncio.get_running_loop()
        assert future._loop is asyncio.get_running_loop()
        assert not future.done()
        assert not future.cancelled()
        with pytest.raises(asyncio.InvalidStateError, match="Result is not set"):
            future.result()
        with pytest.raises(asyncio.InvalidStateError, match="Exception is not set"):
            future.exception()
        calls: list[Any] = []

        def first(done: Any) -> None:
            calls.append(("first", done))

        def second(done: Any) -> None:
            calls.append(("second", done))

        future.add_done_callback(first)
        future.add_done_callback(second)
        future.add_done_callback(first)
        assert future.remove_done_callback(first) == 2
        assert future.remove_done_callback(first) == 0
        future.add_done_callback(first)
        await server_ws.send("message")
        assert await future == "message"
        # In order, before the wakeup of the task awaiting it, added last.
        assert calls == [("second", future), ("first", future)]
        future.add_done_callback(second)  # when done: scheduled at once
        await asyncio.sleep(0)
        assert calls[-1] == ("second", future)
        assert future.result() == "message"
        assert future.exception() is None
        with pytest.raises(asyncio.InvalidStateError):
            future.set_result("again")
        with pytest.raises(StopIteration) as info:
            step(operation)
        assert info.value.value == "message"


async def test_cancelling_the_future_recv_waits_on() -> None:
    async with pair() as (server_ws, client):
        operation, future = await waiting_future(client)
        assert future.cancel(msg="why")
        assert not future.cancel()
        assert future.cancelled()
        assert future.done()
        with pytest.raises(asyncio.CancelledError, match="why"):
            future.result()
        with pytest.raises(asyncio.CancelledError):
            future.exception()
        with pytest.raises(asyncio.CancelledError):
            step(operation)
        assert client._waiter is None
        await server_ws.send("kept")
        assert await client.recv() == "kept"


async def test_exceptions_set_on_the_future_recv_waits_on() -> None:
    async with pair() as (_, client):
        operation, future = await waiting_future(client)
        if sys.version_info >= (3, 13):
            # 3.13 (gh-112182): asyncio.Future keeps a RuntimeError caused by it.
            future.set_exception(StopIteration)
            error = future.exception()
            assert type(error) is RuntimeError
            assert "StopIteration interacts badly" in str(error)
            assert type(error.__cause__) is StopIteration
            assert error.__context__ is error.__cause__
            with pytest.raises(RuntimeError):
                step(operation)
            operation, future = await waiting_future(client)
        else:
            with pytest.raises(TypeError, match="StopIteration"):
                future.set_exception(StopIteration)
        future.set_exception(KeyError)
        assert isinstance(future.exception(), KeyError)
        with pytest.raises(KeyError):
            step(operation)
        with pytest.raises(asyncio.InvalidStateError):
            future.set_exception(KeyError("again"))


async def test_a_task_cancelled_in_recv_loses_no_message() -> None:
    async with pair() as (server_ws, client):
        waiting = asyncio.create_task(client.recv())
        await asyncio.sleep(0)
        future = client._waiter
        assert future is not None
        waiting.cancel("stop")
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert future.cancelled()
        assert client._waiter is None
        await server_ws.send("kept")
        assert await client.recv() == "kept"


async def test_message_fed_while_a_task_runs_wakes_recv_later() -> None:
    # Bytes fed from a task (as the server does with bytes that came behind the
    # handshake) cannot resume another task there and then: it resumes on the
    # next turn of the loop.
    async with pair() as (_, client):
        waiting = asyncio.create_task(client.recv())
        await asyncio.sleep(0)
        client._feed(server_frame(1, b"fed"))
        assert not waiting.done()
        assert await waiting == "fed"


async def test_messages_of_one_read_are_all_queued_before_recv_resumes() -> None:
    # recv() resumes once the whole read is handled: the rest waits in the queue.
    async with pair() as (_, client):
        waiting = asyncio.create_task(client.recv())
        await asyncio.sleep(0)
        seen: list[int] = []
        waiting.add_done_callback(lambda _: seen.append(len(client._messages or ())))
        client._feed(b"".join(server_frame(1, text) for text in (b"a", b"b", b"c")))
        assert await waiting == "a"
        assert seen == [2]
        assert [await client.recv(), await client.recv()] == ["b", "c"]


class Server(ServerProtocol):
    __slots__ = ()


class Client(ClientProtocol):
    __slots__ = ()


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_protocol_subclasses_take_the_general_path(compression: str | None) -> None:
    # The C send() and recv() read the slots of ServerProtocol and ClientProtocol
    # directly; any other class goes through attribute lookups, with the same
    # outcome.
    async with pair(compression=compression) as (server_ws, client):
        server_ws.protocol.__class__ = Server
        client.protocol.__class__ = Client
        for message in ("text", b"binary", b"x" * 5000):
            await server_ws.send(message)
            assert await client.recv() == message
        await client.send("back")
        assert await server_ws.recv() == "back"
        await server_ws.close()
        with pytest.raises(portside.ConnectionClosedOK):
            await server_ws.send("closed")


async def test_protocol_state_missing_fails_send() -> None:
    # Read by name from a protocol of another class: an AttributeError, as the
    # Python send() raises.
    async with pair(compression=None) as (server_ws, client):
        protocol = server_ws.protocol
        protocol.__class__ = Server
        state = protocol.state
        del protocol.state
        try:
            with pytest.raises(AttributeError, match="state"):
                await server_ws.send("x")
        finally:
            protocol.state = state
        await server_ws.send("restored")
        assert await client.recv() == "restored"


async def test_an_overridden_buffer_updated_is_called() -> None:
    # The C connection calls ReaderBase's buffer_updated() directly only where
    # that is the protocol's method.
    reads: list[int] = []

    class Counting(ServerProtocol):
        __slots__ = ()

        def buffer_updated(self, nbytes: int) -> list[Any]:
            reads.append(nbytes)
            return super().buffer_updated(nbytes)

    async with pair(compression=None) as (server_ws, client):
        server_ws.protocol.__class__ = Counting
        for message in ("one", b"two"):
            await client.send(message)
            assert await server_ws.recv() == message
        assert reads == [2 + 4 + 3, 2 + 4 + 3]  # header, mask, payload


async def test_recv_cancelled_after_its_message_came_loses_nothing() -> None:
    async with pair() as (_, client):
        waiting = asyncio.create_task(client.recv())
        await asyncio.sleep(0)
        # Fed from this task, the first message completes recv()'s future, but
        # its task can only resume on the next turn of the loop: cancelled first.
        client._feed(server_frame(1, b"first") + server_frame(1, b"second"))
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert [await client.recv(), await client.recv()] == ["first", "second"]


async def test_recv_closed_after_its_message_came_loses_nothing() -> None:
    async with pair() as (_, client):
        operation = client.recv()
        step(operation)
        client._feed(server_frame(1, b"first"))
        operation.close()
        assert await client.recv() == "first"


async def test_what_a_task_looks_up_on_the_future_recv_waits_on() -> None:
    # A task reads and sets _asyncio_future_blocking, and calls get_loop(),
    # add_done_callback() and, woken, result(), this one looked up by a name it
    # makes anew each time: the C Waiter answers these without the general
    # lookup, with the same objects.
    async with pair() as (server_ws, client):
        operation, future = await waiting_future(client)
        assert future._asyncio_future_blocking is False
        future._asyncio_future_blocking = True
        assert future._asyncio_future_blocking is True
        future._asyncio_future_blocking = 0
        assert future._asyncio_future_blocking is False
        result_name = "".join(["res", "ult"])  # equal to "result", not the same str
        result = getattr(future, result_name)
        assert result.__self__ is future and result.__name__ == "result"
        assert future.get_loop.__self__ is future
        assert future.get_loop() is asyncio.get_running_loop()
        calls: list[Any] = []
        context_name = "".join(["con", "text"])
        future.add_done_callback(calls.append, **{context_name: None})
        with pytest.raises(TypeError):
            future.add_done_callback(calls.append, **{"".join(["ctx"]): None})
        with pytest.raises(AttributeError):
            future.no_such_attribute  # noqa: B018
        await server_ws.send("message")
        assert await future == "message"
        assert getattr(future, result_name)() == "message"
        assert calls == [future]
        with pytest.raises(StopIteration):
            step(operation)


def the_spare_waiter(connection: Any) -> int | None:
    """The id of the waiter a connection keeps for its next recv(), if any."""
    spare = [o for o in gc.get_referents(connection) if type(o).__name__ == "Waiter"]
    return id(spare[0]) if spare else None


async def wait_for_message(server_ws: Any, client: Any, message: str) -> int:
    """recv() in a task until server_ws sends message; the id of its waiter."""
    waiting = asyncio.create_task(client.recv())
    await asyncio.sleep(0)
    waiter_id = id(client._waiter)
    await server_ws.send(message)
    assert await waiting == message
    return waiter_id


@needs_c
async def test_recv_waits_on_the_waiter_of_the_last_recv() -> None:
    async with pair() as (server_ws, client):
        first = await wait_for_message(server_ws, client, "one")
        # Kept by the connection (so no other object can have its id), with the
        # message let go.
        assert the_spare_waiter(client) == first
        assert await wait_for_message(server_ws, client, "two") == first
        assert await wait_for_message(server_ws, client, "three") == first


@needs_c
async def test_a_waiter_held_elsewhere_is_not_reused() -> None:
    async with pair() as (server_ws, client):
        waiting = asyncio.create_task(client.recv())
        await asyncio.sleep(0)
        held = client._waiter
        await server_ws.send("one")
        assert await waiting == "one"
        result = held.result  # a bound method held: the waiter must not change either
        del held
        assert await wait_for_message(server_ws, client, "two") != id(result.__self__)
        assert result() == "one"
        assert result.__self__.done()


class SubclassTask(asyncio.Task):  # type: ignore[type-arg]
    """A Task of a class of its own, as a task factory may make."""


def python_task(coroutine: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
    """A task of asyncio's pure-Python Task class."""
    task_class: Any = getattr(asyncio.tasks, "_PyTask")  # noqa: B009 - private
    return cast(asyncio.Future[Any], task_class(coroutine))


@pytest.mark.parametrize(
    "make_task", [asyncio.ensure_future, SubclassTask, python_task], ids=["c", "subclass", "python"]
)
async def test_every_kind_of_task_is_woken_with_its_message(
    make_task: Callable[[Coroutine[Any, Any, Any]], asyncio.Future[Any]],
) -> None:
    # The C waiter resumes an asyncio Task (C) by handing its wakeup a finished
    # Future, whose outcome the wakeup reads in C; other tasks get the waiter
    # itself and ask it for its result(). The same outcome either way, message
    # after message on the same waiter.
    async with pair() as (server_ws, client):
        for message in ("one", "two", "three"):
            waiting = make_task(client.recv())
            await asyncio.sleep(0)
            assert not waiting.done()
            await server_ws.send(message)
            assert await waiting == message


async def test_writelines_that_joins_is_done_in_one_write() -> None:
    # asyncio.WriteTransport.writelines() joins the buffers and calls write():
    # a large frame to such a transport goes out in one write(), of the same
    # bytes; a transport with writelines() of its own gets the buffers.
    class Joining(asyncio.Transport):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[tuple[str, Any]] = []

        def write(self, data: Any) -> None:
            self.calls.append(("write", bytes(data)))

        def is_closing(self) -> bool:
            return False

    class Gathering(Joining):
        def writelines(self, list_of_data: Any) -> None:
            self.calls.append(("writelines", [bytes(data) for data in list_of_data]))

    payload = b"x" * 5000
    header = b"\x82\x7e" + len(payload).to_bytes(2, "big")
    async with pair(compression=None) as (server_ws, _):
        transport = server_ws.transport
        try:
            server_ws.transport = joining = Joining()
            await server_ws.send(payload)
            assert joining.calls == [("write", header + payload)]
            server_ws.transport = gathering = Gathering()
            messages, sent = server_ws.messages_sent, server_ws.bytes_sent
            await server_ws.send(payload)
            assert gathering.calls == [("writelines", [header, payload])]
            # Counted once, though writelines() goes through _write_all().
            assert server_ws.messages_sent == messages + 1
            assert server_ws.bytes_sent == sent + len(header) + len(payload)
        finally:
            server_ws.transport = transport


async def test_recv_leaves_no_waiter_to_the_garbage_collector() -> None:
    # The C Waiter keeps its bound methods, which refer to it: every path must
    # break that cycle, or each recv() would leave garbage to collect.
    async with pair() as (server_ws, client):
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for index in range(20):
                await wait_for_message(server_ws, client, str(index))
                waiting = asyncio.create_task(client.recv())
                await asyncio.sleep(0)
                waiting.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await waiting
            gc.collect()
            left = [o for o in gc.garbage if type(o).__name__ in ("Waiter", "Future")]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
        assert left == []


# The rarer rules of coroutines and futures, which the C Operation and Waiter
# follow as Python's coroutines and asyncio's futures do.


async def test_a_running_operation_cannot_be_reentered() -> None:
    # The message's fragments come from a generator, which the operation is
    # running when it steps, throws into or closes that very operation.
    async with pair() as (server_ws, client):
        outcomes: list[str] = []

        def fragments() -> Iterator[str]:
            calls: list[tuple[str, Callable[[], object]]] = [
                ("send", lambda: operation.send(None)),
                ("throw", lambda: operation.throw(KeyError("into itself"))),
                ("close", lambda: operation.close()),
            ]
            for name, call in calls:
                with pytest.raises(ValueError, match="already executing"):
                    call()
                outcomes.append(name)
            yield "whole"

        operation = server_ws.send(fragments())
        await operation
        assert outcomes == ["send", "throw", "close"]
        assert await client.recv() == "whole"


async def test_an_operation_stepped_as_an_iterator() -> None:
    # What a generator-based coroutine does with an awaitable: __await__(),
    # then __next__() on what it returns.
    async with pair() as (server_ws, client):
        await server_ws.send("queued")
        await client.send("ready")
        assert await server_ws.recv() == "ready"
        iterator: Any = client.recv().__await__()
        with pytest.raises(StopIteration) as info:
            next(iterator)
        assert info.value.value == "queued"
        iterator = client.recv().__await__()
        future = next(iterator)
        assert asyncio.isfuture(future)
        future._asyncio_future_blocking = False  # as a task would leave it
        # A future yields itself once; stepped again while pending, it says
        # it was not awaited as a future should be.
        future_iterator = future.__await__()
        assert next(future_iterator) is future
        with pytest.raises(RuntimeError, match="await wasn't used with future"):
            next(future_iterator)
        await server_ws.send("late")
        future._asyncio_future_blocking = False
        await future
        with pytest.raises(StopIteration) as info:
            next(iterator)
        assert info.value.value == "late"


class Unconstructible(Exception):
    def __init__(self) -> None:
        raise ZeroDivisionError


class NotAnInstance(Exception):
    def __new__(cls, *args: Any) -> Any:
        return 42


async def test_throw_argument_errors() -> None:
    # A TypeError for each, or the constructor's exception. (The C operation
    # checks them before anything else; a Python coroutine hands them to the
    # future it awaits, whose error then ends it.)
    async with pair() as (server_ws, client):
        cases: list[tuple[tuple[Any, ...], type[BaseException], str | None]] = [
            ((), TypeError, "throw expected at least 1 argument, got 0"),
            ((KeyError, None, None, None), TypeError, "throw expected at most 3 arguments, got 4"),
            ((KeyError, None, "not a traceback"), TypeError, None),
            ((NotAnInstance,), TypeError, None),
            ((Unconstructible,), ZeroDivisionError, None),
        ]
        for args, expected, message in cases:
            operation: Any = client.recv()
            step(operation)
            with pytest.raises(expected, match=message), old_throw_signature(len(args)):
                operation.throw(*args)
            operation.close()
            assert client._waiter is None
        await server_ws.send("still open")
        assert await client.recv() == "still open"


class Stuck:
    """An awaitable that waits until it is thrown into or closed."""

    def __init__(self, close_error: BaseException | None = None) -> None:
        self.close_error = close_error

    def __await__(self) -> Any:
        return self

    def __iter__(self) -> Any:
        return self

    def __next__(self) -> None:
        return None  # what the operation yields: stepped by hand, never by a task

    def send(self, value: Any) -> None:
        return None

    def throw(self, *args: Any) -> None:
        raise args[-1] if isinstance(args[-1], BaseException) else args[0]

    def close(self) -> None:
        if self.close_error is not None:
            raise self.close_error


async def test_an_exception_thrown_into_a_send_that_catches_it() -> None:
    # The message's async iterator catches what is thrown where it waits, and
    # waits again (the operation's throw() returns what it awaits), then ends
    # the message (throw() raises StopIteration: the send is over).
    async with pair(compression=None) as (server_ws, client):

        async def fragments() -> AsyncIterator[str]:
            yield "first"
            with contextlib.suppress(KeyError):
                await Stuck()
            try:
                await Stuck()
            except KeyError:
                return

        operation: Any = server_ws.send(fragments())
        assert step(operation) is None
        assert operation.throw(KeyError("caught")) is None
        with pytest.raises(StopIteration):
            operation.throw(KeyError("caught and done"))
        with pytest.raises(RuntimeError, match="cannot reuse"):
            step(operation)
        assert await client.recv() == "first"


async def test_closing_a_send_in_progress() -> None:
    # Abandoned halfway, a fragmented message fails the connection (RFC 6455
    # 5.4: it cannot be finished); an awaitable that fails to close makes
    # close() raise.
    async with pair(compression=None) as (server_ws, client):

        async def fragments(stuck: Stuck) -> AsyncIterator[str]:
            yield "first"
            await stuck

        operation: Any = server_ws.send(fragments(Stuck()))
        step(operation)
        operation.close()
        operation.close()  # again: nothing to do
        with pytest.raises(portside.ConnectionClosedError) as info:
            await client.recv()
        assert info.value.code == 1011

    async with pair(compression=None) as (server_ws, client):

        class Fragments:
            def __aiter__(self) -> Fragments:
                return self

            def __anext__(self) -> Stuck:
                return Stuck(close_error=KeyError("refused"))

        operation = server_ws.send(Fragments())
        step(operation)
        with pytest.raises(KeyError, match="refused"):
            operation.close()
        await server_ws.send("still open")
        assert await client.recv() == "still open"


async def test_warning_about_an_unawaited_operation_that_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With warnings as errors, the warning is reported as unraisable, with the
    # operation, which the report may keep alive: it is not warned about twice.
    async with pair() as (server_ws, client):
        reports: list[Any] = []
        monkeypatch.setattr(sys, "unraisablehook", reports.append)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            forget(server_ws.send("lost"))
            (report,) = reports
            assert isinstance(report.exc_value, RuntimeWarning)
            assert "was never awaited" in str(report.exc_value)
            assert report.object is not None
            reports.clear()
            del report
            gc.collect()
            assert reports == []
        await server_ws.send("after")
        assert await client.recv() == "after"


class RaisingEquality:
    """A callback that cannot be compared with another."""

    def __call__(self, future: Any) -> None:
        pass

    def __eq__(self, other: object) -> bool:
        raise ZeroDivisionError

    __hash__ = object.__hash__


async def test_the_future_recv_waits_on_refuses_what_a_future_refuses() -> None:
    async with pair() as (server_ws, client):
        operation, future = await waiting_future(client)
        with pytest.raises(TypeError):
            future.cancel("one", "two")
        with pytest.raises(TypeError):
            future.cancel(message="keyword")
        with pytest.raises(ZeroDivisionError):
            future.set_exception(Unconstructible)
        with pytest.raises(TypeError, match="invalid exception object"):
            future.set_exception("not an exception")
        # The attribute a task reads, by a name that is not the interned one.
        name = "".join(["_asyncio_future", "_blocking"])
        assert getattr(future, name) is False
        with pytest.raises(AttributeError):
            delattr(future, name)
        with pytest.raises(ZeroDivisionError):
            setattr(future, name, BadTruth())
        setattr(future, name, 1)
        assert getattr(future, name) is True
        future._asyncio_future_blocking = False
        # remove_done_callback() compares callbacks with ==, which may raise.
        first = RaisingEquality()
        future.add_done_callback(first)
        with pytest.raises(ZeroDivisionError):
            future.remove_done_callback(print)
        assert future.remove_done_callback(first) == 1
        future.add_done_callback(print)
        future.add_done_callback(first)
        with pytest.raises(ZeroDivisionError):
            future.remove_done_callback(repr)
        assert not future.done()
        operation.close()
        await server_ws.send("kept")
        assert await client.recv() == "kept"


async def test_a_result_set_on_the_future_recv_waits_on() -> None:
    async with pair() as (server_ws, client):
        operation, future = await waiting_future(client)
        future.set_result("set by hand")
        with pytest.raises(StopIteration) as info:
            step(operation)
        assert info.value.value == "set by hand"
        await server_ws.send("next")
        assert await client.recv() == "next"


class BadTruth:
    def __bool__(self) -> bool:
        raise ZeroDivisionError


async def test_client_masks_that_fail(monkeypatch: pytest.MonkeyPatch) -> None:
    # A client's frame takes the protocol's next mask (RFC 6455 5.3): what goes
    # wrong there fails send(), and nothing is written.
    async with pair(compression=None) as (server_ws, client):

        def no_mask(self: ClientProtocol) -> bytes:
            raise KeyError("no mask")

        def short_mask(self: ClientProtocol) -> bytes:
            return b"abc"

        monkeypatch.setattr(ClientProtocol, "_next_mask", no_mask)
        with pytest.raises(KeyError, match="no mask"):
            await client.send("text")
        monkeypatch.setattr(ClientProtocol, "_next_mask", short_mask)
        with pytest.raises(ValueError, match="4 bytes"):
            await client.send(b"binary")
        monkeypatch.undo()
        await client.send("masked")
        assert await server_ws.recv() == "masked"


class FailingTransport(asyncio.Transport):
    """A transport whose writes fail."""

    def write(self, data: Any) -> None:
        raise KeyError("write")

    def writelines(self, list_of_data: Any) -> None:
        raise KeyError("writelines")

    def is_closing(self) -> bool:
        return False


@pytest.mark.parametrize("size", [10, 5000], ids=["small", "large"])
async def test_a_failing_write_fails_send(size: int) -> None:
    async with pair(compression=None) as (server_ws, client):
        for connection in (server_ws, client):
            transport = connection.transport
            connection.transport = FailingTransport()
            try:
                for message in ("x" * size, b"x" * size):
                    with pytest.raises(KeyError, match="write"):
                        await connection.send(message)
            finally:
                connection.transport = transport
        await server_ws.send("written")
        assert await client.recv() == "written"
