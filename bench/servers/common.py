"""What every echo server shares: its command line, limits, TLS and event loop."""

from __future__ import annotations

import argparse
import contextlib
import logging
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from bench.runtime import LOOPS, raise_nofile_limit, run_on_loop

__all__ = ["ServerOptions", "main", "main_threads"]

# Large enough for every benchmark message; the libraries' own limits are off.
MAX_FRAME_SIZE = 1 << 30


@dataclass(frozen=True)
class ServerOptions:
    """The options every echo server accepts."""

    host: str
    port: int
    loop: str
    certfile: str | None
    keyfile: str | None
    compression: bool

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server-side TLS context, or ``None`` for plain TCP."""
        if self.certfile is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certfile, self.keyfile)
        return context

    def serve_options(self) -> dict[str, Any]:
        """The options of ``serve()`` for the servers with websockets' API.

        portside's and websockets', asyncio and threads: TLS if asked, the
        library's default permessage-deflate if asked, no keepalive pings, no
        message size limit. One definition, so that they are all set up alike.
        """
        return {
            "ssl": self.ssl_context(),
            "compression": "deflate" if self.compression else None,
            "ping_interval": None,
            "max_size": None,
        }


def parse_options(description: str, argv: list[str] | None = None) -> ServerOptions:
    """Parse the command line shared by every echo server."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--loop", choices=LOOPS, default="uvloop")
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="serve wss://")
    parser.add_argument(
        "--compression",
        action="store_true",
        help="accept permessage-deflate with the library's default settings",
    )
    args = parser.parse_args(argv)
    certfile, keyfile = args.tls if args.tls else (None, None)
    return ServerOptions(
        host=args.host,
        port=args.port,
        loop=args.loop,
        certfile=certfile,
        keyfile=keyfile,
        compression=args.compression,
    )


def main(serve: Callable[[ServerOptions], Coroutine[Any, Any, None]], description: str) -> None:
    """Parse the command line, then run ``serve(options)`` until the process is killed."""
    options = parse_options(description)
    raise_nofile_limit()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        run_on_loop(serve(options), options.loop)


def main_threads(
    serve: Callable[..., Any], handler: Callable[[Any], None], description: str
) -> None:
    """Parse the command line, then serve ``handler`` with a threading API's ``serve()``.

    ``--loop`` is accepted for the harness and ignored: there is no event loop.
    """
    options = parse_options(description)
    with serve(handler, options.host, options.port, **options.serve_options()) as server:
        server.serve_forever()
