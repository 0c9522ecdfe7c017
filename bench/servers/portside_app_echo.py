"""portside echo server as ``portside serve`` runs it: the App layer in one process.

What a worker of ``portside serve`` executes: :class:`portside.Runner` (the same
:class:`~portside.app.appserver.AppServer`), with ``/healthz`` and ``/readyz``
chained before the handshake, without the supervisor. ``python -m
bench.instructions --servers portside,portside_app`` compares it with the plain
``portside.serve()`` server: the difference is what the application server adds
per message and per handshake.
"""

from __future__ import annotations

import argparse

import portside
from bench.runtime import LOOPS, raise_nofile_limit
from bench.servers.apps import portside_echo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--loop", choices=LOOPS, default="uvloop")
    args = parser.parse_args()
    raise_nofile_limit()
    portside.run(
        portside_echo,
        args.host,
        args.port,
        loop=args.loop,
        compression=None,
        ping_interval=None,
        max_size=None,
    )


if __name__ == "__main__":
    main()
