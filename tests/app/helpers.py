"""Running ``portside serve`` as a real process, and waiting for what it logs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import portside

READY = re.compile(
    r"serving \S+ on .*?127\.0\.0\.1:(\d+).*? with (\d+) workers? \(pids ([\d, ]+)\)"
)

# A module for the tests: each connection is told which process serves it, then
# gets its messages back.
ECHO_APP = """
import os
import portside

VERSION = "v1"


async def echo(ws):
    await ws.send(f"{VERSION} {os.getpid()}")
    async for message in ws:
        await ws.send(message)


app = portside.App(echo, compression=None, ping_interval=None)
"""


def write_module(directory: Path, name: str, source: str) -> None:
    (directory / f"{name}.py").write_text(textwrap.dedent(source))


class ServeProcess:
    """A ``python -m portside serve`` process whose stderr lines can be awaited."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._changed = asyncio.Condition()
        self._reader = asyncio.ensure_future(self._read())
        self.port = 0
        self.pids: list[int] = []

    async def _read(self) -> None:
        assert self.process.stderr is not None
        while True:
            line = await self.process.stderr.readline()
            if not line:
                break
            text = line.decode(errors="replace").rstrip("\n")
            if os.environ.get("PORTSIDE_TEST_ECHO_LOGS"):
                print(text, file=sys.stderr)
            async with self._changed:
                self.lines.append(text)
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    @property
    def pid(self) -> int:
        return self.process.pid

    async def wait_line(self, pattern: str, timeout: float = 15.0, start: int = 0) -> re.Match[str]:
        """The first line from index ``start`` on that matches ``pattern`` (a regex)."""
        regex = re.compile(pattern)

        async def find() -> re.Match[str]:
            index = start
            async with self._changed:
                while True:
                    for line in self.lines[index:]:
                        match = regex.search(line)
                        if match:
                            return match
                    index = max(index, len(self.lines))
                    if self._reader.done():
                        raise AssertionError(
                            f"exited ({self.process.returncode}) without logging {pattern!r}:\n"
                            + "\n".join(self.lines)
                        )
                    await self._changed.wait()

        try:
            return await asyncio.wait_for(find(), timeout)
        except asyncio.TimeoutError:
            raise AssertionError(
                f"no line matching {pattern!r} within {timeout} s:\n" + "\n".join(self.lines)
            ) from None

    async def ready(self, timeout: float = 20.0) -> int:
        """Wait for the "serving ... on ..." line; return the port."""
        match = await self.wait_line(READY.pattern, timeout)
        self.port = int(match.group(1))
        self.pids = [int(pid) for pid in match.group(3).split(", ")]
        return self.port

    def url(self, path: str = "/") -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    async def wait(self, timeout: float = 30.0) -> int:
        status = await asyncio.wait_for(self.process.wait(), timeout)
        await asyncio.wait_for(self._reader, 5)
        return status

    async def close(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                await self.process.wait()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._reader, 5)

    def text(self) -> str:
        return "\n".join(self.lines)


def serve_env(coverage: bool = True, **extra: str) -> dict[str, str]:
    """The environment of a server under test; ``coverage=False`` leaves coverage out of
    it (a test that times the server measures the server, not coverage's start-up)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PORTSIDE_")}
    if not coverage:
        env = {k: v for k, v in env.items() if not k.startswith("COVERAGE_")}
    for name in ("PORTSIDE_NO_SPEEDUPS", "PORTSIDE_TEST_ECHO_LOGS"):
        if name in os.environ:
            env[name] = os.environ[name]
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(extra)
    return env


async def start_serve(
    *args: str, cwd: Path, env: dict[str, str] | None = None, command: str = "serve"
) -> ServeProcess:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "portside",
        command,
        *args,
        cwd=str(cwd),
        env=serve_env() if env is None else env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    return ServeProcess(process)


@asynccontextmanager
async def serving(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> AsyncIterator[ServeProcess]:
    """``portside serve ARGS`` on a free port, ready; stopped (and its workers) on exit."""
    server = await start_serve("--bind", "127.0.0.1:0", *args, cwd=cwd, env=env)
    try:
        await server.ready()
        yield server
    finally:
        await server.close()


async def greeting(ws: portside.ClientConnection) -> tuple[str, int]:
    """The version and pid the echo app sends first."""
    message = await ws.recv()
    assert isinstance(message, str)
    version, pid = message.split()
    return version, int(pid)


def read(path: Path) -> str:
    """The text of ``path``; empty if it does not exist (yet)."""
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


async def eventually(condition: Callable[[], object], timeout: float = 10.0) -> object:
    """Poll ``condition`` until it is true, for what no event tells (a file's contents)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := condition()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition still false after {timeout} s")
        await asyncio.sleep(0.02)
    return result
