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
import sys

import portside

# Autobahn's largest messages are 16 MiB (cases 9.1.6 and 9.2.6).
MAX_SIZE = 2**25
# Received messages buffered ahead of the echo loop before reading pauses.
MAX_QUEUE = 32


async def echo(ws: portside.ServerConnection) -> None:
    """Send every message back as it came: ``str`` as text, ``bytes`` as binary."""
    async for message in ws:
        await ws.send(message)


async def serve(host: str, port: int, *, max_size: int, max_queue: int, compression: bool) -> None:
    """Serve until SIGTERM or SIGINT."""
    loop = asyncio.get_running_loop()
    server = await portside.serve(
        echo,
        host,
        port,
        compression="deflate" if compression else None,
        max_size=max_size,
        max_queue=max_queue,
        ping_interval=None,
    )
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.close)
    bound = server.sockets[0].getsockname()
    print(f"READY ws://{host}:{bound[1]}", flush=True)
    await server.wait_closed()


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve."""
    parser = argparse.ArgumentParser(description="portside echo server for Autobahn.")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=int, default=9002, help="TCP port; 0 picks a free one")
    parser.add_argument("--max-size", type=int, default=MAX_SIZE, help="largest message, bytes")
    parser.add_argument("--max-queue", type=int, default=MAX_QUEUE, help="messages buffered")
    parser.add_argument(
        "--no-compression", action="store_true", help="do not negotiate permessage-deflate"
    )
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    coro = serve(
        args.host,
        args.port,
        max_size=args.max_size,
        max_queue=args.max_queue,
        compression=not args.no_compression,
    )
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)
    return 0


if __name__ == "__main__":
    sys.exit(main())
