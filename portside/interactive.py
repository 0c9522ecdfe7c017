"""The interactive client: ``python -m portside ws://host:port/``.

It behaves as ``python -m websockets``: it connects, prints ``Connected to
<uri>.``, then shows a ``> `` prompt. Each line typed is sent as a text
message; each message received is shown as it arrives, ``< text`` or
``< (binary) <hex>``, above the line being typed when the output is a terminal.
Ctrl-D (end of input) or Ctrl-C closes the connection with the closing
handshake, then ``Connection closed: <code> (<meaning>) <reason>.`` is printed.
The server closing the connection ends the program the same way.

``python -m portside`` dispatches here when its first argument is a
``ws://`` or ``wss://`` URI; :func:`main` is the entry point.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import signal
import ssl
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

from .asyncio.client import ClientConnection, connect
from .exceptions import ConnectionClosed
from .protocol.close import Close
from .version import __version__

__all__ = ["main"]

# Control characters (C0, DEL, C1) shown escaped, as repr() would, so that a
# message cannot move the cursor or change the terminal's settings.
_ESCAPES = str.maketrans(
    {i: repr(chr(i))[1:-1] for i in itertools.chain(range(32), range(127, 160))}
)


def escape(text: str) -> str:
    """Make ``text`` safe to print on a terminal."""
    return text.translate(_ESCAPES)


class Console:
    """Prints messages without garbling the line being typed.

    On a terminal, a message goes on a new line inserted above the prompt
    (VT100 sequences: save the cursor, insert a line, restore); elsewhere,
    lines are printed as they come.
    """

    def __init__(self, output: TextIO) -> None:
        self.output = output
        self.terminal = output.isatty()
        self.lock = threading.Lock()

    def prompt(self) -> None:
        with self.lock:
            self.output.write("> ")
            self.output.flush()

    def incoming(self, line: str) -> None:
        with self.lock:
            if self.terminal:
                # Save the cursor, go to a new line, move up, insert a blank
                # line, print there, restore the cursor, move down.
                self.output.write(f"\0337\n\033[A\033[L{line}\n\0338\033[B")
            else:
                self.output.write(f"{line}\n")
            self.output.flush()

    def final(self, line: str) -> None:
        with self.lock:
            if self.terminal:
                # Replace the prompt's line.
                self.output.write(f"\r\033[K{line}\n")
            else:
                self.output.write(f"\n{line}\n")
            self.output.flush()


def _read_lines(
    stdin: TextIO, console: Console, send: Callable[[str], None], done: Callable[[], None]
) -> None:
    """Read lines in a thread (blocking reads), hand them to the event loop."""
    while True:
        console.prompt()
        line = stdin.readline()
        if not line:
            done()
            return
        send(line.rstrip("\r\n"))


async def _show_messages(websocket: ClientConnection, console: Console) -> None:
    async for message in websocket:
        if isinstance(message, str):
            console.incoming("< " + escape(message))
        else:
            console.incoming("< (binary) " + message.hex())


async def _send_messages(websocket: ClientConnection, queue: asyncio.Queue[str]) -> None:
    while True:
        message = await queue.get()
        try:
            await websocket.send(message)
        except ConnectionClosed:
            return
        finally:
            queue.task_done()


async def interactive_client(uri: str, stdin: TextIO, stdout: TextIO, **kwargs: Any) -> int:
    """Run the interactive session; return the exit status."""
    try:
        websocket = await connect(uri, **kwargs)
    except Exception as exc:
        stdout.write(f"Failed to connect to {uri}: {exc}.\n")
        stdout.flush()
        return 1
    stdout.write(f"Connected to {uri}.\n")
    stdout.flush()
    console = Console(stdout)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str] = asyncio.Queue()
    stop: asyncio.Future[None] = loop.create_future()

    def send(line: str) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed
            loop.call_soon_threadsafe(queue.put_nowait, line)

    def done() -> None:
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(_finish, stop)

    # A daemon thread reads the terminal: blocking reads, and nothing to join
    # at exit when a line is half typed.
    threading.Thread(
        target=_read_lines,
        args=(stdin, console, send, done),
        name="portside-interactive-input",
        daemon=True,
    ).start()
    interrupted = False
    if threading.current_thread() is threading.main_thread():
        # Ctrl-C closes the connection cleanly, on every supported Python.
        loop.add_signal_handler(signal.SIGINT, _finish, stop)
        interrupted = True
    incoming = asyncio.create_task(_show_messages(websocket, console))
    outgoing = asyncio.create_task(_send_messages(websocket, queue))
    try:
        # The server closing, Ctrl-D or Ctrl-C: whichever comes first.
        await asyncio.wait([incoming, outgoing, stop], return_when=asyncio.FIRST_COMPLETED)
        if stop.done() and not incoming.done():
            # Lines read before the end of input go out before the close.
            sent = asyncio.ensure_future(queue.join())
            await asyncio.wait([sent, incoming], return_when=asyncio.FIRST_COMPLETED)
            sent.cancel()
        outgoing.cancel()
        await websocket.close()
        # Messages the server sent before its Close frame are still shown.
        await asyncio.wait([incoming])
    finally:
        if interrupted:
            loop.remove_signal_handler(signal.SIGINT)
        for task in (incoming, outgoing):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await task
        await websocket.close()
    close = Close(websocket.close_code or 1006, websocket.close_reason or "")
    console.final(f"Connection closed: {escape(str(close))}.")
    return 0


def _finish(stop: asyncio.Future[None]) -> None:
    if not stop.done():
        stop.set_result(None)


def main(argv: list[str] | None = None) -> int:
    """Run the interactive client with the command-line arguments ``argv``.

    Args:
        argv: The arguments after the program's name: ``[--insecure] <uri>``,
            ``--version`` or ``--help``; ``sys.argv[1:]`` when ``None``.

    Returns:
        The exit status: 0 after a session, 1 if the connection failed, 2 for
        bad arguments.
    """
    parser = argparse.ArgumentParser(
        prog="python -m portside",
        description="Interactive WebSocket client.",
        add_help=False,
    )
    parser.add_argument("--help", action="store_true", help="show usage and exit")
    parser.add_argument(
        "--insecure", action="store_true", help="disable TLS certificate verification"
    )
    parser.add_argument("--version", action="store_true", help="show version and exit")
    parser.add_argument("uri", metavar="<uri>", nargs="?")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    if args.help:
        parser.print_usage()
        return 0
    if args.version:
        print(f"portside {__version__}")
        return 0
    if args.uri is None:
        parser.print_usage()
        return 2
    with contextlib.suppress(ImportError):  # line editing, where available
        import readline  # noqa: F401
    kwargs: dict[str, Any] = {}
    if args.insecure and args.uri.startswith("wss://"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        kwargs["ssl"] = context
    return asyncio.run(interactive_client(args.uri, sys.stdin, sys.stdout, **kwargs))
