"""Echo server for Autobahn's fuzzingclient, on portside's threading API.

The same server as ``echo_server.py``, written with :mod:`portside.sync.server`:
echoes text as text and binary as binary, with permessage-deflate on,
keepalive pings off and limits high enough for the large-message cases (9.x).
Prints one line ``READY ws://HOST:PORT`` once listening (``--port 0`` picks a
free port) and exits with status 0 on SIGTERM or SIGINT after closing every
connection.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from portside.sync.server import ServerConnection, serve

# Autobahn's largest messages are 16 MiB (cases 9.1.6 and 9.2.6).
MAX_SIZE = 2**25
# Received messages buffered ahead of the echo loop before reading pauses.
MAX_QUEUE = 32


def echo(ws: ServerConnection) -> None:
    """Send every message back as it came: ``str`` as text, ``bytes`` as binary."""
    for message in ws:
        ws.send(message)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description="portside threading echo server for Autobahn.")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=int, default=9002, help="TCP port; 0 picks a free one")
    parser.add_argument("--max-size", type=int, default=MAX_SIZE, help="largest message, bytes")
    parser.add_argument("--max-queue", type=int, default=MAX_QUEUE, help="messages buffered")
    parser.add_argument(
        "--no-compression", action="store_true", help="do not negotiate permessage-deflate"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    with serve(
        echo,
        args.host,
        args.port,
        compression=None if args.no_compression else "deflate",
        max_size=args.max_size,
        max_queue=args.max_queue,
        ping_interval=None,
    ) as server:
        serving = threading.Thread(target=server.serve_forever)
        serving.start()
        bound = server.socket.getsockname()
        print(f"READY ws://{args.host}:{bound[1]}", flush=True)
        # The main thread waits for a signal (its handler interrupts the wait);
        # shutdown() runs here, outside the signal handler.
        stop.wait()
        server.shutdown()
        serving.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
