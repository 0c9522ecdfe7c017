"""portside echo server on the threading API (portside.sync), as its docs write one."""

from __future__ import annotations

from bench.servers.common import main_threads
from portside.sync.server import ServerConnection, serve


def echo(ws: ServerConnection) -> None:
    for message in ws:
        ws.send(message)


if __name__ == "__main__":
    main_threads(serve, echo, __doc__ or "")
