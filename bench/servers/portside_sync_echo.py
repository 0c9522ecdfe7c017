"""portside echo server on the threading API (portside.sync), as its docs write one."""

from __future__ import annotations

from bench.servers.common import parse_options
from portside.sync.server import ServerConnection, serve


def echo(ws: ServerConnection) -> None:
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
