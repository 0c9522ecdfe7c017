"""Echo server for Autobahn's fuzzingclient, written against portside's public API.

Echoes text as text and binary as binary, with permessage-deflate on, keepalive
pings off and limits high enough for the large-message cases (9.x). Prints one
line ``READY ws://HOST:PORT`` once listening (``--port 0`` picks a free port) and
exits with status 0 on SIGTERM or SIGINT after closing every connection.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys
from typing import Any

import portside

# Autobahn's largest messages are 16 MiB (cases 9.1.6 and 9.2.6).
MAX_SIZE = 2**25
# Received messages buffered ahead of the echo loop before reading pauses.
MAX_QUEUE = 32


def argument_parser(description: str) -> argparse.ArgumentParser:
    """The command line that both echo servers take."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=int, default=9002, help="TCP port; 0 picks a free one")
    parser.add_argument("--max-size", type=int, default=MAX_SIZE, help="largest message, bytes")
    parser.add_argument("--max-queue", type=int, default=MAX_QUEUE, help="messages buffered")
    parser.add_argument(
        "--no-compression", action="store_true", help="do not negotiate permessage-deflate"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    return parser


def configure_logging(args: argparse.Namespace) -> None:
    """Log to stderr, at INFO level with ``--verbose``."""
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def server_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of ``serve()``, either API's, that the command line sets."""
    return {
        "compression": None if args.no_compression else "deflate",
        "max_size": args.max_size,
        "max_queue": args.max_queue,
        "ping_interval": None,
    }


def print_ready(host: str, sock: socket.socket) -> None:
    """Print the line that compliance.run waits for, with the port ``sock`` listens on."""
    print(f"READY ws://{host}:{sock.getsockname()[1]}", flush=True)


async def echo(ws: portside.ServerConnection) -> None:
    """Send every message back as it came: ``str`` as text, ``bytes`` as binary."""
    async for message in ws:
        await ws.send(message)


async def serve(args: argparse.Namespace) -> None:
    """Serve until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    server = await portside.serve(echo, args.host, args.port, **server_options(args))
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.close)
    print_ready(args.host, server.sockets[0])
    await server.wait_closed()


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve."""
    parser = argument_parser("portside echo server for Autobahn.")
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args(argv)
    configure_logging(args)
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(serve(args))
    else:
        asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
