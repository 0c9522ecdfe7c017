"""The asyncio accelerator when memory runs out at import: MemoryError, never a crash.

As tests/protocol/test_speedups_nomemory.py does for the protocol core: the
module's initialisation (interned names, types, the capsules and slots it looks
up) runs with its first allocation failing, then its second, and so on (on
CPython 3.13.0 to 3.13.5, its object allocations only: gh-109700).
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import sys
from collections.abc import Callable
from typing import Any

import pytest

import portside
from portside.asyncio.speedups import IMPLEMENTATION
from portside.protocol import connection as protocol_connection
from tests.asyncio.helpers import pair
from tests.needs import needs_speedups
from tests.protocol.test_speedups_nomemory import (
    fail_each_allocation,
    failing_objects_only,
    in_a_fresh_interpreter,
    setdefault_raises_memory_error,
)
from tests.sanitizer import not_under_sanitizer

_testcapi = pytest.importorskip("_testcapi")
pytest.importorskip("portside.asyncio._speedups")

pytestmark = not_under_sanitizer("set_nomemory() hooks CPython's allocators, ASan's malloc")


@in_a_fresh_interpreter
def test_module_initialisation() -> None:
    spec = importlib.util.find_spec("portside.asyncio._speedups")
    assert spec is not None
    assert spec.loader is not None

    def load() -> None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # type: ignore[union-attr]

    # Where CPython corrupts a dict whose growth fails (gh-109700: see
    # setdefault_raises_memory_error()), as it creates Waiter, Operation and
    # ConnectionBase, only object allocations fail.
    objects_only = not setdefault_raises_memory_error()
    assert fail_each_allocation(load, limit=2000, objects_only=objects_only) >= 10


def fail_allocations_in_turn(
    operation: Callable[[Any], object],
    prepare: Callable[[], Any] = lambda: None,
    clean_up: Callable[[Any], object] = lambda state: None,
    *,
    until: int = 1,
    limit: int = 2000,
    objects_only: bool = False,
) -> int:
    """Run ``operation(prepare())`` with its allocation 0, then 1, 2... failing.

    ``prepare`` and ``clean_up`` (given what ``prepare`` returned) run before
    and after each attempt, their allocations succeeding. The attempts end once
    ``until`` in a row succeed: more than one where the code recovers from a
    failure by itself (it then succeeds, but without the allocations after the
    failure, which later attempts must still reach). Returns how many attempts
    raised MemoryError. ``objects_only``: as fail_each_allocation()'s.
    """
    # No garbage collection and no tracing meanwhile: see fail_each_allocation().
    unhook = failing_objects_only() if objects_only else None
    enabled = gc.isenabled()
    gc.disable()
    trace = sys.gettrace()
    sys.settrace(None)
    failed = succeeded = 0
    try:
        for number in range(limit):
            state = prepare()
            if unhook is not None:
                unhook()
            _testcapi.set_nomemory(number, number + 1)
            try:
                operation(state)
            except MemoryError:
                failed += 1
                succeeded = 0
            else:
                succeeded += 1
            finally:
                _testcapi.remove_mem_hooks()
                clean_up(state)
            if succeeded == until:
                return failed
    finally:
        sys.settrace(trace)
        if enabled:
            gc.enable()
    raise AssertionError(f"{operation} still fails after {limit} allocations")


@in_a_fresh_interpreter
def test_module_initialisation_past_what_it_recovers_from() -> None:
    # What the module finds optional (asyncio's C Task, the protocol
    # accelerator's capsule, the selector transport) it goes on without when
    # looking it up fails: the allocations after those must fail in turn too.
    # Object allocations only where CPython corrupts a type's dict whose
    # growth fails (gh-109700), as test_module_initialisation.
    spec = importlib.util.find_spec("portside.asyncio._speedups")
    assert spec is not None
    assert spec.loader is not None

    def load(state: None) -> None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # type: ignore[union-attr]

    objects_only = not setdefault_raises_memory_error()
    assert fail_allocations_in_turn(load, until=50, objects_only=objects_only) >= 100


def test_module_initialisation_with_a_bad_copy_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.find_spec("portside.asyncio._speedups")
    assert spec is not None
    assert spec.loader is not None
    monkeypatch.setattr(protocol_connection, "_COPY_THRESHOLD", 2**100)
    module = importlib.util.module_from_spec(spec)
    with pytest.raises(OverflowError):
        spec.loader.exec_module(module)


# Each C entry point of a connection, on a real one, with each allocation failing
# in turn: MemoryError, the connection left usable. What runs while allocations
# fail is kept to the code under test: no pytest.raises(), whose Python code
# makes functions, and CPython 3.12 crashes when making a function fails
# (python/cpython#122752).


def ends_the_iteration(operation: Any) -> None:
    try:
        operation.send(None)
    except StopAsyncIteration:
        return
    raise AssertionError("the iteration did not end")


c_connection = needs_speedups(IMPLEMENTATION == "c", "the C connection")


@c_connection
async def test_recv_and_its_waiter() -> None:
    async with pair() as (server_ws, client):

        def prepare() -> list[Any]:
            return [None]  # a slot for the operation, set without allocating

        def attempt(made: list[Any]) -> None:
            operation = made[0] = client.recv()
            future = operation.send(None)
            future._asyncio_future_blocking = False
            for callback in (str, repr, ascii):
                future.add_done_callback(callback)
            future.remove_done_callback(repr)
            future.get_loop()
            future.result  # noqa: B018 - the cached bound method

        def clean_up(made: list[Any]) -> None:
            if made[0] is not None:
                made[0].close()

        assert fail_allocations_in_turn(attempt, prepare, clean_up) >= 5
        await server_ws.send("after")
        assert await client.recv() == "after"


@c_connection
async def test_end_of_iteration() -> None:
    # async for on a connection that closes normally while it waits: the
    # StopAsyncIteration that ends the loop.
    async with pair() as (_, client):

        def prepare() -> tuple[Any, Any]:
            operation = client.__anext__()
            future = operation.send(None)
            return operation, future

        def attempt(state: tuple[Any, Any]) -> None:
            operation, future = state
            future.set_exception(closed_ok)
            ends_the_iteration(operation)

        def clean_up(state: tuple[Any, Any]) -> None:
            state[0].close()

        closed_ok = portside.ConnectionClosedOK(None, None)
        assert fail_allocations_in_turn(attempt, prepare, clean_up) >= 1


class Gathering(asyncio.Transport):
    """A transport that keeps what it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []

    def write(self, data: Any) -> None:
        self.written.append(bytes(data))

    def writelines(self, list_of_data: Any) -> None:
        self.written.append(b"".join(list_of_data))

    def is_closing(self) -> bool:
        return False


@c_connection
@pytest.mark.parametrize("size", [10, 5000], ids=["small", "large"])
async def test_send(size: int) -> None:
    # From the server (frames of its own) and from the client (masked), into
    # a transport that keeps the frames: each frame written is whole, even
    # when an allocation after the write (the StopIteration that ends the
    # operation) fails.
    async with pair(compression=None) as (server_ws, client):
        for connection in (server_ws, client):
            transport = connection.transport
            connection.transport = gathering = Gathering()
            try:
                for message in ("x" * size, b"x" * size):

                    def attempt(
                        state: None, connection: Any = connection, message: Any = message
                    ) -> None:
                        try:
                            connection.send(message).send(None)
                        except StopIteration:
                            return
                        raise AssertionError("send() did not return at once")

                    gathering.written.clear()
                    assert fail_allocations_in_turn(attempt) >= 1
                    assert gathering.written
                    length = 4 if size > 125 else 2
                    mask = 4 if connection is client else 0
                    for frame in gathering.written:
                        assert frame[0] == (0x81 if isinstance(message, str) else 0x82)
                        assert len(frame) == length + mask + size
            finally:
                connection.transport = transport
        await server_ws.send("after")
        assert await client.recv() == "after"
