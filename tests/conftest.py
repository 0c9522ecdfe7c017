"""Run ``async def`` tests in a fresh event loop, with a timeout.

``PORTSIDE_TEST_LOOP=uvloop`` runs them on uvloop instead of asyncio's loop.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import pathlib
import tempfile
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any

import pytest

from tests.needs import check_needs

fcntl: ModuleType | None
try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

TEST_TIMEOUT = float(os.environ.get("PORTSIDE_TEST_TIMEOUT", "30"))

# Clients use the proxy the environment names (proxy=True, as in websockets):
# the tests' loopback connections must not depend on the machine's proxy
# settings. Tests of proxies set what they need.
for _name in [name for name in os.environ if name.lower().endswith("_proxy")]:
    del os.environ[_name]


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    if os.environ.get("PORTSIDE_TEST_LOOP") == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    funcargs = pyfuncitem.funcargs
    kwargs = {name: funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}

    async def run() -> Any:
        return await asyncio.wait_for(pyfuncitem.obj(**kwargs), TEST_TIMEOUT)

    loop = loop_factory()()
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(run())
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    return True


def pytest_runtest_setup(item: pytest.Item) -> None:
    check_needs(item)


@pytest.fixture(autouse=True)
def _fixed_port_taken_in_turn(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests marked ``portside_port(N)`` hold a lock on port N for their run.

    Programs written with a fixed port (websockets' examples, 8765) cannot share
    a machine; CI runs the suite on several Pythons at once, and a developer may
    run two suites: such tests take turns, across processes.
    """
    mark = request.node.get_closest_marker("portside_port")
    if mark is None or fcntl is None:
        yield
        return
    path = pathlib.Path(tempfile.gettempdir()) / f"portside-tests-port-{mark.args[0]}.lock"
    with path.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
