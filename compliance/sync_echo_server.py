"""Echo server for Autobahn's fuzzingclient, on portside's threading API.

The same server as ``echo_server.py``, written with :mod:`portside.sync.server`:
echoes text as text and binary as binary, with permessage-deflate on,
keepalive pings off and limits high enough for the large-message cases (9.x).
Prints one line ``READY ws://HOST:PORT`` once listening (``--port 0`` picks a
free port) and exits with status 0 on SIGTERM or SIGINT after closing every
connection.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType

if not __package__:
    # Run as a script: the shared pieces are in compliance/echo_server.py.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from compliance.echo_server import (
    argument_parser,
    configure_logging,
    print_ready,
    server_options,
)
from portside.sync.server import ServerConnection, serve


def echo(ws: ServerConnection) -> None:
    """Send every message back as it came: ``str`` as text, ``bytes`` as binary."""
    for message in ws:
        ws.send(message)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and serve until SIGTERM or SIGINT."""
    args = argument_parser("portside threading echo server for Autobahn.").parse_args(argv)
    configure_logging(args)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    with serve(echo, args.host, args.port, **server_options(args)) as server:
        serving = threading.Thread(target=server.serve_forever)
        serving.start()
        print_ready(args.host, server.socket)
        # The main thread waits for a signal (its handler interrupts the wait);
        # shutdown() runs here, outside the signal handler.
        stop.wait()
        server.shutdown()
        serving.join()
    return 0


if __name__ == "__main__":
    sys.exit(main())
