"""A real redis-server for the tests: its own port, directory and configuration."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import tempfile
from collections.abc import AsyncIterator

REDIS_SERVER = shutil.which("redis-server")
REASON = "needs redis-server (apt install redis-server)"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """``redis-server`` on a free port of ``host`` (addresses separated by spaces), no persistence.

    Attributes:
        url: ``redis://host:port/0``.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int | None = None, password: str | None = None
    ) -> None:
        self.host = host
        self.port = port or free_port(host.split()[0])
        self.password = password
        auth = f":{password}@" if password else ""
        self.url = f"redis://{auth}{host.split()[0]}:{self.port}/0"
        self.directory = tempfile.mkdtemp(prefix="portside-redis-")
        self.process: asyncio.subprocess.Process | None = None
        self.log: list[str] = []

    async def start(self) -> None:
        """Start it; return once it accepts connections (its log says so)."""
        assert REDIS_SERVER is not None
        assert self.process is None
        self.process = await asyncio.create_subprocess_exec(
            REDIS_SERVER,
            "--bind",
            *self.host.split(),
            "--port",
            str(self.port),
            "--dir",
            self.directory,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--logfile",
            "",
            # Off loopback, Redis serves only clients that authenticate.
            *(["--requirepass", self.password] if self.password else []),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        while True:
            line = (await asyncio.wait_for(self.process.stdout.readline(), 10)).decode()
            if not line:
                raise RuntimeError("redis-server exited:\n" + "".join(self.log))
            self.log.append(line)
            if "Ready to accept connections" in line:
                break
        # Keep reading its output, so that it never blocks on a full pipe.
        self._drain = asyncio.get_running_loop().create_task(self._read_log(self.process))

    async def _read_log(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        async for line in process.stdout:
            self.log.append(line.decode())

    async def stop(self) -> None:
        """Stop it (SIGTERM: no save, as configured) and wait until it has exited."""
        process, self.process = self.process, None
        if process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 10)
        except asyncio.TimeoutError:  # pragma: no cover - a stuck server
            process.kill()
            await process.wait()
        await self._drain

    async def restart(self) -> None:
        """Stop it and start it again on the same port, empty."""
        await self.stop()
        await self.start()

    def cleanup(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.asynccontextmanager
async def redis_server(host: str = "127.0.0.1") -> AsyncIterator[RedisServer]:
    server = RedisServer(host)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
        server.cleanup()
