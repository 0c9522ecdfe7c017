"""portside.run() and Runner: one process, the same signals and drain as portside serve."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import portside
from portside.app.run import Runner


async def echo(ws: portside.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


def client_session(url: str, outcome: dict[str, Any], before_close: Any = None) -> None:
    """In its own thread and loop: connect, echo, then wait for the server's Close."""

    async def session() -> None:
        async with portside.connect(url) as ws:
            await ws.send("hello")
            outcome["echo"] = await ws.recv()
            if before_close is not None:
                before_close()
            await ws.wait_closed()
            outcome["code"] = ws.close_code

    asyncio.run(session())


def url_of(runner: Runner) -> str:
    port = runner.sockets[0].getsockname()[1]
    return f"ws://127.0.0.1:{port}/"


@pytest.fixture
def restore_signals() -> Iterator[None]:
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_runner_in_a_thread_stopped_from_another_thread() -> None:
    runner = Runner(echo, "127.0.0.1", 0, loop="asyncio")
    thread = threading.Thread(target=runner.run)
    thread.start()
    assert runner.wait_ready(10)
    outcome: dict[str, Any] = {}
    client = threading.Thread(target=client_session, args=(url_of(runner), outcome, runner.stop))
    client.start()
    client.join(10)
    thread.join(10)
    assert not thread.is_alive()
    assert outcome == {"echo": "hello", "code": 1001}


def test_stop_before_run_returns_at_once() -> None:
    runner = Runner(echo, "127.0.0.1", 0, loop="asyncio", tune_allocator=False)
    runner.stop(1012)
    runner.run()
    assert runner.wait_ready(0)


def test_run_in_the_main_thread_drains_on_sigterm(restore_signals: None) -> None:
    started = threading.Event()
    outcome: dict[str, Any] = {}
    app = portside.App(echo)
    stopped = []

    @app.on_startup
    async def up() -> None:
        started.set()

    @app.on_shutdown
    async def down() -> None:
        stopped.append(True)

    runner = Runner(app, "127.0.0.1", 0, loop="asyncio")

    def drive() -> None:
        assert runner.wait_ready(10)
        client_session(url_of(runner), outcome, lambda: os.kill(os.getpid(), signal.SIGTERM))

    thread = threading.Thread(target=drive)
    thread.start()
    runner.run()
    thread.join(10)
    assert outcome == {"echo": "hello", "code": 1001}
    assert stopped == [True]


def test_without_add_signal_handler_signal_signal_is_used(
    monkeypatch: pytest.MonkeyPatch, restore_signals: None
) -> None:
    # What happens on Windows, where the loop has no add_signal_handler.
    def missing(*args: Any) -> None:
        raise NotImplementedError

    monkeypatch.setattr(asyncio.AbstractEventLoop, "add_signal_handler", missing)
    monkeypatch.setattr(asyncio.SelectorEventLoop, "add_signal_handler", missing)
    outcome: dict[str, Any] = {}
    runner = Runner(echo, "127.0.0.1", 0, loop="asyncio", graceful_timeout=5)
    installed: list[Any] = []

    def drive() -> None:
        assert runner.wait_ready(10)
        installed.append(signal.getsignal(signal.SIGINT))
        client_session(url_of(runner), outcome, lambda: os.kill(os.getpid(), signal.SIGINT))

    thread = threading.Thread(target=drive)
    thread.start()
    runner.run()
    thread.join(10)
    assert outcome == {"echo": "hello", "code": 1001}
    assert callable(installed[0]) and installed[0] is not signal.default_int_handler
    # Handlers were restored afterwards.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_portside_run_serves_a_handler(restore_signals: None) -> None:
    outcome: dict[str, Any] = {}
    sock = __import__("socket").socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]

    def drive() -> None:
        # The socket is listening already: connecting waits until run() serves it.
        client_session(
            f"ws://127.0.0.1:{port}/", outcome, lambda: os.kill(os.getpid(), signal.SIGTERM)
        )

    thread = threading.Thread(target=drive)
    thread.start()
    portside.run(echo, sock=sock, loop="asyncio", compression=None, max_size=2**10)
    thread.join(10)
    assert outcome == {"echo": "hello", "code": 1001}


def test_portside_run_still_runs_a_coroutine() -> None:
    async def main() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert portside.run(main(), tune_allocator=False) in ("asyncio.unix_events", "uvloop")
    with pytest.raises(TypeError, match="takes no address"):
        portside.run(main(), "localhost", 8765)


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        ((echo,), {}, "needs a port"),
        ((echo, "h", 1), {"sock": object()}, "either sock, or host and port"),
        ((echo, None, 1), {"loop": "trio"}, "loop must be"),
        ((echo, None, 1), {"drain_spread": 40}, "drain_spread must be >= 0 and shorter"),
        ((echo, None, 1), {"max_size": -1}, "max_size must be >= 0"),
        ((echo, None, 1), {"bogus": 1}, "App\\(\\) got options it cannot carry: bogus"),
        ((42, None, 1), {}, "expected a handler or a portside.App"),
    ],
)
def test_runner_checks_its_arguments(args: Any, kwargs: Any, error: str) -> None:
    with pytest.raises((TypeError, ValueError), match=error):
        Runner(*args, **kwargs)
