"""websockets echo server on its threading API (websockets.sync), set up as its docs advise."""

from __future__ import annotations

from typing import Any

from websockets.sync.server import serve

from bench.servers.common import parse_options


def echo(ws: Any) -> None:
    for message in ws:
        ws.send(message)


def main() -> None:
    # --loop is accepted for the harness and ignored: there is no event loop.
    options = parse_options(__doc__ or "")
    with serve(
        echo,
        options.host,
        options.port,
        ssl=options.ssl_context(),
        compression="deflate" if options.compression else None,
        ping_interval=None,
        max_size=None,
    ) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
