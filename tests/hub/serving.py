"""``portside serve`` in a child process, its log, and clients of tests/hub/acceptance_app.py."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Coroutine, Sequence
from typing import Any

import portside
from tests.conftest import loop_factory
from tests.hub.redis_server import free_port

APP = "tests.hub.acceptance_app:app"
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_slow(main: Coroutine[Any, Any, None], timeout: float) -> None:
    """Run a slow test's coroutine in a fresh event loop, with its own timeout.

    tests/conftest.py gives ``async def`` tests 30 s; the acceptance tests take
    longer on a busy 2-core machine, so they are plain functions that call this.
    """
    loop = loop_factory()()
    try:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(asyncio.wait_for(main, timeout))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        asyncio.set_event_loop(None)
        loop.close()


class Served:
    """``portside serve APP`` with its output kept, line by line, to wait on."""

    def __init__(self, app: str, *, workers: int, host: str, port: int | None = None) -> None:
        self.app = app
        self.workers = workers
        self.host = host
        self.port = port or free_port(host)
        self.lines: list[str] = []
        self.process: asyncio.subprocess.Process | None = None
        self._changed = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "portside",
            "serve",
            self.app,
            "--workers",
            str(self.workers),
            "--bind",
            f"{self.host}:{self.port}",
            "--metrics-path",
            "/metrics",
        ]

    async def start(self, env: dict[str, str], prefix: Sequence[str] = ()) -> None:
        """Start it (``prefix``: e.g. ``ip netns exec NAME``); return once every worker is ready."""
        self.process = await asyncio.create_subprocess_exec(
            *prefix,
            *self.command(),
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": REPO, **env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        self._reader = asyncio.get_running_loop().create_task(self._read())
        # The supervisor says so once every worker is ready.
        await self.wait_for(r"serving .* on .* with \d+ workers?", timeout=30)

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async for raw in self.process.stdout:
            async with self._changed:
                self.lines.append(raw.decode(errors="replace"))
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    def count(self, pattern: str) -> int:
        return sum(1 for line in self.lines if re.search(pattern, line))

    async def wait_for(self, pattern: str, count: int = 1, timeout: float = 20) -> None:
        """Wait until ``count`` lines of the log match ``pattern``."""

        def enough() -> bool:
            if self.count(pattern) >= count:
                return True
            if self._reader is not None and self._reader.done():
                raise AssertionError(f"portside serve exited:\n{''.join(self.lines[-40:])}")
            return False

        try:
            async with self._changed:
                await asyncio.wait_for(self._changed.wait_for(enough), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(
                f"no {count} lines matching {pattern!r}:\n{''.join(self.lines[-40:])}"
            ) from None

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except asyncio.TimeoutError:  # pragma: no cover - a stuck server
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
        if self._reader is not None:
            await self._reader

    async def metrics(self) -> dict[str, float]:
        """GET /metrics: every sample without labels, and labelled ones summed by name."""
        reader, writer = await asyncio.open_connection(self.host, self.port)
        writer.write(f"GET /metrics HTTP/1.1\r\nHost: {self.host}\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
        body = (await reader.readexactly(length)).decode()
        writer.close()
        values: dict[str, float] = {}
        for line in body.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name, _, value = line.rpartition(" ")
            name = name.split("{")[0]
            values[name] = values.get(name, 0.0) + float(value)
        return values


@contextlib.asynccontextmanager
async def served(
    env: dict[str, str], *, workers: int = 2, host: str = "127.0.0.1", app: str = APP
) -> AsyncIterator[Served]:
    server = Served(app, workers=workers, host=host)
    try:
        await server.start(env)
        yield server
    finally:
        await server.stop()


async def client(server: Served, path: str, **kwargs: Any) -> tuple[portside.ClientConnection, int]:
    """A client of the acceptance app, and the pid of the worker it reached."""
    kwargs.setdefault("compression", None)
    kwargs.setdefault("max_queue", None)
    connection = await portside.connect(f"ws://{server.host}:{server.port}{path}", **kwargs)
    hello = json.loads(await connection.recv())
    assert hello["type"] == "worker", hello
    return connection, int(hello["pid"])


async def subscriber(
    server: Served, path: str = "/sub", **kwargs: Any
) -> tuple[portside.ClientConnection, int]:
    connection, pid = await client(server, path, **kwargs)
    frame = json.loads(await connection.recv())
    assert frame["type"] == "subscribed", frame
    return connection, pid


async def publishers(server: Served, count: int = 2) -> list[portside.ClientConnection]:
    """One publisher connection on each of ``count`` distinct workers."""
    found: dict[int, portside.ClientConnection] = {}
    for _ in range(100):
        connection, pid = await client(server, "/pub")
        if pid in found:
            await connection.close()
        else:
            found[pid] = connection
        if len(found) == count:
            return list(found.values())
    raise AssertionError(f"100 connections reached only {len(found)} workers")


class Subscribers:
    """``python -m tests.hub.subscribers``: many subscribers in a process of their own."""

    def __init__(self) -> None:
        self.process: asyncio.subprocess.Process | None = None
        self.pids: dict[str, int] = {}

    async def start(
        self, url: str, clients: int, messages: int | None = None, prefix: Sequence[str] = ()
    ) -> None:
        """Start them; return once all are subscribed."""
        args = ["--url", url, "--clients", str(clients)]
        if messages is not None:
            args += ["--messages", str(messages)]
        self.process = await asyncio.create_subprocess_exec(
            *prefix,
            sys.executable,
            "-m",
            "tests.hub.subscribers",
            *args,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": REPO},
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
            limit=2**28,  # the results are one long line
        )
        self.pids = (await self._line("subscribed", 60))["pids"]

    async def _line(self, key: str, timeout: float) -> dict[str, Any]:
        assert self.process is not None and self.process.stdout is not None
        while True:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
            if not line:
                raise AssertionError(f"the subscribers exited before {key!r}")
            data: dict[str, Any] = json.loads(line)
            if key in data:
                return data

    async def results(self, timeout: float = 120) -> tuple[list[dict[str, Any]], float]:
        """What each subscriber received, and when the last one was done."""
        data = await self._line("done", timeout)
        await self.stop()
        return data["done"], data["at"]

    async def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
            await process.wait()


@contextlib.asynccontextmanager
async def subscribers(
    url: str, clients: int, messages: int | None = None, prefix: Sequence[str] = ()
) -> AsyncIterator[Subscribers]:
    group = Subscribers()
    await group.start(url, clients, messages, prefix)
    try:
        yield group
    finally:
        await group.stop()
