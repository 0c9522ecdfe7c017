"""An echo server with a health check on the same port: what ``make run`` starts.

    python examples/echo_server.py [--host HOST] [--port PORT]

WebSocket clients get every message back; ``GET /healthz`` answers ``200 OK``.
SIGTERM or Ctrl-C shuts it down gracefully: clients get close code 1001.
"""

from __future__ import annotations

import argparse
import asyncio
import http
import logging
import signal

import portside


async def echo(ws: portside.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


def health_check(
    connection: portside.ServerConnection, request: portside.Request
) -> portside.Response | None:
    if request.path == "/healthz":
        return connection.respond(http.HTTPStatus.OK, "OK\n")
    return None


async def main(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set_result, None)
    async with portside.serve(echo, host, port, process_request=health_check):
        print(f"echo server on ws://{host}:{port}/ ; health check on http://{host}:{port}/healthz")
        print("stop with Ctrl-C")
        await stop
    print("server closed")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    portside.run(main(args.host, args.port))
