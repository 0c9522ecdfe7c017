"""A portside server in a process of its own, for tests that measure it from outside.

Memory figures (RSS, virtual size) of a server mean something only when the
clients do not share its process. ``python -m tests.asyncio.server_process``
serves on a free loopback port, prints ``port N`` on stdout, logs to stderr one
line per record, and answers commands read on stdin, one per line:

- ``connections``: prints ``connections N``, the size of ``server.connections``;
- ``memory``: collects garbage, then prints ``memory`` and the RSS and
  virtual size in KiB, once nothing is left to run on the loop;
- end of input: closes the server and exits.

:class:`ServerProcess` starts one from a test and reads its answers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import pathlib
import resource
import socket
import ssl
import sys
import warnings
from collections.abc import AsyncIterator
from typing import Any

import portside

CERT = pathlib.Path(__file__).with_name("localhost.pem")
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def status(pid: int | str = "self") -> dict[str, int]:
    """The ``Vm*`` lines of ``/proc/<pid>/status``, in KiB."""
    fields = {}
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name.startswith("Vm"):
            fields[name] = int(value.split()[0])
    return fields


# The handlers a test may choose.


async def echo(ws: portside.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def idle(ws: portside.ServerConnection) -> None:
    """Never reads: what the peer sends piles up to max_queue, then TCP pushes back."""
    await ws.wait_closed()


async def push(ws: portside.ServerConnection) -> None:
    """Sends 1 KiB messages as fast as send() returns, until the connection closes."""
    message = bytes(1024)
    with contextlib.suppress(portside.ConnectionClosed):
        while True:
            await ws.send(message)
            # send() returns without yielding while the transport takes the
            # bytes: let the loop see, among others, that the peer is gone.
            await asyncio.sleep(0)


HANDLERS = {"echo": echo, "idle": idle, "push": push}


def connection_stats(server: portside.Server) -> dict[str, int]:
    """How many connections, how many of them paused, and the bytes they buffer."""
    connections = list(server.connections)
    return {
        "connections": len(connections),
        "open": sum(c.protocol.state is portside.State.OPEN for c in connections),
        "write_paused": sum(c._write_paused for c in connections),
        "reading_paused": sum(c._reading_paused for c in connections),
        "write_buffered": sum(
            c.transport.get_write_buffer_size() for c in connections if c.transport is not None
        ),
        "queued": sum(len(c._messages or ()) for c in connections),
    }


async def serve(args: argparse.Namespace) -> None:
    options: dict[str, Any] = json.loads(args.options)
    if args.tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(CERT)
        options["ssl"] = context
    loop = asyncio.get_running_loop()
    async with portside.serve(HANDLERS[args.handler], "127.0.0.1", 0, **options) as server:
        if args.sndbuf is not None:
            # Set on the listening socket, inherited by those it accepts (Linux),
            # which then keep this size instead of growing with TCP autotuning.
            for sock in server.sockets:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, args.sndbuf)
        if args.address_space_headroom is not None:
            # RLIMIT_AS counts virtual memory: the allocations that exceed it fail
            # with MemoryError, as they do on a host whose memory ran out.
            limit = status()["VmSize"] * 1024 + args.address_space_headroom * 2**20
            resource.setrlimit(resource.RLIMIT_AS, (limit, resource.RLIM_INFINITY))
        print("port", server.sockets[0].getsockname()[1], flush=True)
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            command = line.strip()
            if command == "connections":
                print("connections", len(server.connections), flush=True)
            elif command == "stats":
                print("stats", json.dumps(connection_stats(server)), flush=True)
            elif command == "memory":
                # Let callbacks scheduled by the last events run first.
                for _ in range(10):
                    await asyncio.sleep(0)
                gc.collect()
                vm = status()
                print("memory", vm["VmRSS"], vm["VmSize"], flush=True)
            else:
                print("unknown command", command, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handler", choices=sorted(HANDLERS), default="echo")
    parser.add_argument("--options", default="{}", help="keyword arguments of serve(), JSON")
    parser.add_argument("--tls", action="store_true", help="serve wss:// with localhost.pem")
    parser.add_argument(
        "--sndbuf",
        type=int,
        metavar="BYTES",
        help="SO_SNDBUF of the connections (the kernel doubles it)",
    )
    parser.add_argument(
        "--address-space-headroom",
        type=int,
        metavar="MiB",
        help="limit the address space to what it is once listening, plus this",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stderr)
    # A transport or a socket left open warns when it is collected (as the test
    # suite's filterwarnings = error would make it fail): in the log, for the
    # tests to see. Exceptions ignored in __del__ go to stderr, in the log too.
    warnings.simplefilter("always", ResourceWarning)
    logging.captureWarnings(True)
    if os.environ.get("PORTSIDE_TEST_LOOP") == "uvloop":
        import uvloop

        uvloop.run(serve(args))
    else:
        asyncio.run(serve(args))


class ServerProcess:
    """A running ``server_process``, driven from a test.

    Attributes:
        process: The server's process.
        port: Its TCP port.
    """

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port
        self.log: list[str] = []  # the lines logged so far
        self._logged = asyncio.Event()  # set at each new line
        # Read stderr as it comes: a full pipe would block the server.
        self._reading = asyncio.create_task(self._read_log())

    async def _read_log(self) -> None:
        assert self.process.stderr is not None
        while line := await self.process.stderr.readline():
            self.log.append(line.decode().rstrip("\n"))
            self._logged.set()

    async def wait_for_log(self, text: str) -> str:
        """Wait for a line logged that contains ``text``; return it."""
        seen = 0
        while True:
            for line in self.log[seen:]:
                if text in line:
                    return line
            seen = len(self.log)
            self._logged.clear()
            await self._logged.wait()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    @classmethod
    @contextlib.asynccontextmanager
    async def run(
        cls,
        handler: str = "echo",
        *,
        tls: bool = False,
        address_space_headroom: int | None = None,
        sndbuf: int | None = None,
        **options: Any,
    ) -> AsyncIterator[ServerProcess]:
        """Start a server with these ``serve()`` options; stop it on exit.

        ``sndbuf`` fixes the send buffer of its connections (``SO_SNDBUF``).
        """
        command = [sys.executable, "-m", "tests.asyncio.server_process", "--handler", handler]
        command += ["--options", json.dumps(options)]
        if tls:
            command.append("--tls")
        if address_space_headroom is not None:
            command += ["--address-space-headroom", str(address_space_headroom)]
        if sndbuf is not None:
            command += ["--sndbuf", str(sndbuf)]
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=pathlib.Path(__file__).parents[2],
        )
        try:
            assert process.stdout is not None
            line = await process.stdout.readline()
            if not line.startswith(b"port "):
                stderr = await process.stderr.read() if process.stderr else b""
                raise RuntimeError(f"the server did not start: {line!r} {stderr.decode()}")
            server = cls(process, int(line.split()[1]))
            try:
                yield server
            finally:
                await server.stop()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

    async def ask(self, command: str) -> list[str]:
        """Send a command; return the words of its answer, after the command's name."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command.encode() + b"\n")
        await self.process.stdin.drain()
        answer = (await self.process.stdout.readline()).decode().split()
        assert answer[:1] == [command], answer
        return answer[1:]

    async def connections(self) -> int:
        """The size of ``server.connections``."""
        return int((await self.ask("connections"))[0])

    async def stats(self) -> dict[str, int]:
        """See connection_stats()."""
        stats: dict[str, int] = json.loads(" ".join(await self.ask("stats")))
        return stats

    async def wait_for_stats(
        self, name: str, value: int, timeout: float = 30, inverse: bool = False
    ) -> dict[str, int]:
        """Ask for the stats until ``name`` reaches ``value``, from below or from
        above with ``inverse`` (the server tells no event)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            stats = await self.stats()
            if (stats[name] <= value) if inverse else (stats[name] >= value):
                return stats
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{name} is {stats[name]}, not {value}, after {timeout} s")
            await asyncio.sleep(0.05)

    async def memory(self) -> tuple[int, int]:
        """RSS and virtual size, in KiB, once the server had nothing left to do."""
        rss, size = await self.ask("memory")
        return int(rss), int(size)

    def status(self) -> dict[str, int]:
        """The ``Vm*`` figures of the server's process, now, in KiB."""
        return status(self.process.pid)

    async def stop(self) -> list[str]:
        """Close the server and wait for it to exit; return every line it logged."""
        assert self.process.stdin is not None
        if not self.process.stdin.is_closing():
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 10)
        except asyncio.TimeoutError:
            self.process.kill()
            await self.process.wait()
        await self._reading
        return self.log


if __name__ == "__main__":
    main()
