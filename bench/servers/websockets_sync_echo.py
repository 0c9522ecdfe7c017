"""websockets echo server on its threading API (websockets.sync), set up as its docs advise."""

from __future__ import annotations

from typing import Any

from websockets.sync.server import serve

from bench.servers.common import main_threads


def echo(ws: Any) -> None:
    for message in ws:
        ws.send(message)


if __name__ == "__main__":
    main_threads(serve, echo, __doc__ or "")
