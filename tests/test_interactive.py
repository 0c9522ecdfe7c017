"""The interactive client, through main() and as a real process (pipes and a pty)."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import pty
import signal
import socket
import sys
import threading
from collections.abc import AsyncIterator

import pytest

import portside
from portside.interactive import escape, interactive_client, main

CODE = "import sys, portside.interactive as i; sys.exit(i.main(sys.argv[1:]))"


async def greet_then_echo(ws: portside.ServerConnection) -> None:
    await ws.send("welcome\x1b[2J")
    await ws.send(b"\x00\x01")
    async for message in ws:
        if message == "bye":
            await ws.close(1001, "see you")
            return
        await ws.send(message)


@contextlib.asynccontextmanager
async def server() -> AsyncIterator[str]:
    async with portside.serve(greet_then_echo, "127.0.0.1", 0) as running:
        port = running.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/"


def test_escape() -> None:
    assert escape("a\x1b[2J\x07\x7f\x85é") == "a\\x1b[2J\\x07\\x7f\\x85é"


async def test_session_until_end_of_input() -> None:
    received: list[object] = []

    async def record(ws: portside.ServerConnection) -> None:
        await ws.send("welcome\x1b[2J")
        await ws.send(b"\x00\x01")
        async for message in ws:
            received.append(message)

    async with portside.serve(record, "127.0.0.1", 0) as running:
        uri = f"ws://127.0.0.1:{running.sockets[0].getsockname()[1]}/"
        out = io.StringIO()
        status = await interactive_client(uri, io.StringIO("hello\nworld\n"), out)
    assert status == 0
    assert received == ["hello", "world"]
    text = out.getvalue()
    assert text.startswith(f"Connected to {uri}.\n")
    # Received before the close: control characters escaped, binary in hex.
    assert "< welcome\\x1b[2J\n" in text
    assert "< (binary) 0001\n" in text
    assert text.endswith("Connection closed: 1000 (OK).\n")


async def test_server_closes_first() -> None:
    reader, writer = os.pipe()  # input that has not ended when the server closes
    async with server() as uri:
        out = io.StringIO()
        with open(reader) as stdin:
            os.write(writer, b"bye\n")
            status = await interactive_client(uri, stdin, out)
            # End the input, which the reading thread still waits on, before
            # closing the file under it.
            os.close(writer)
            for thread in threading.enumerate():
                if thread.name == "portside-interactive-input":
                    await asyncio.get_running_loop().run_in_executor(None, thread.join)
    assert status == 0
    assert "Connection closed: 1001 (going away) see you.\n" in out.getvalue()


async def test_connection_failure() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = io.StringIO()
    status = await interactive_client(f"ws://127.0.0.1:{port}/", io.StringIO(), out)
    assert status == 1
    assert out.getvalue().startswith(f"Failed to connect to ws://127.0.0.1:{port}/: ")


def test_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"portside {portside.__version__}\n"
    assert main(["--help"]) == 0
    assert "usage: python -m portside" in capsys.readouterr().out
    assert main([]) == 2
    assert main(["--nope"]) == 2


async def run(
    *args: str, stdin: int | None = None, stdout: int | None = None
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CODE,
        *args,
        stdin=stdin if stdin is not None else asyncio.subprocess.PIPE,
        stdout=stdout if stdout is not None else asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_process_with_piped_input() -> None:
    received: list[object] = []

    async def record(ws: portside.ServerConnection) -> None:
        await ws.send("welcome")
        async for message in ws:
            received.append(message)

    async with portside.serve(record, "127.0.0.1", 0) as running:
        uri = f"ws://127.0.0.1:{running.sockets[0].getsockname()[1]}/"
        process = await run(uri)
        out, err = await process.communicate(b"ping\npong\n")
    assert process.returncode == 0, err
    # Lines read before the end of input are sent before the connection closes.
    assert received == ["ping", "pong"]
    text = out.decode()
    assert text.startswith(f"Connected to {uri}.\n")
    assert "< welcome\n" in text
    assert text.endswith("Connection closed: 1000 (OK).\n")


async def test_process_insecure_flag_and_failure() -> None:
    process = await run("--insecure", "wss://127.0.0.1:1/")
    out, _ = await process.communicate(b"")
    assert process.returncode == 1
    assert out.startswith(b"Failed to connect to wss://127.0.0.1:1/")


class Terminal:
    """The interactive client in a real pseudo-terminal."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.seen = b""

    async def expect(self, text: bytes) -> None:
        loop = asyncio.get_running_loop()
        while text not in self.seen:
            ready: asyncio.Future[None] = loop.create_future()
            loop.add_reader(self.master, ready.set_result, None)
            try:
                await ready
            finally:
                loop.remove_reader(self.master)
            self.seen += os.read(self.master, 4096)

    def type(self, text: bytes) -> None:
        os.write(self.master, text)


@pytest.mark.parametrize("ending", ["ctrl-d", "ctrl-c"])
async def test_process_in_a_terminal(ending: str) -> None:
    master, slave = pty.openpty()
    try:
        async with server() as uri:
            process = await run(uri, stdin=slave, stdout=slave)
            terminal = Terminal(master)
            await terminal.expect(b"Connected to")
            await terminal.expect(b"> ")
            await terminal.expect(b"< (binary) 0001")
            terminal.type(b"typed\n")
            await terminal.expect(b"< typed")
            if ending == "ctrl-d":
                terminal.type(b"\x04")  # end of input at the start of a line
            else:
                process.send_signal(signal.SIGINT)  # what Ctrl-C sends
            await terminal.expect(b"Connection closed: 1000 (OK).")
            assert await process.wait() == 0
            assert process.stderr is not None
            assert await process.stderr.read() == b""  # no traceback
            # On a terminal, messages are inserted above the prompt.
            assert b"\x1b7\r\n\x1b[A\x1b[L< typed" in terminal.seen  # the tty adds \r
    finally:
        os.close(master)
        os.close(slave)
