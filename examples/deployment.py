"""The deployment page's three programs, as a module for ``portside serve``.

The seed page's programs (``examples/seed/``) each spend twenty lines on an event
loop, a signal handler and a shutdown sequence around a three-line handler.
With ``portside serve``, the handler is the whole program; from this folder:

    portside serve deployment:echo --bind localhost:8765          # programs 1 and 2
    portside serve deployment:echo_legacy --bind localhost:8765   # program 2, as written
    portside serve deployment:app --bind localhost:8765           # program 3

SIGTERM drains: clients get close code 1001 and the server exits 0. Program 3's
own ``health_check`` answers ``GET /health/``; ``portside serve`` also answers
``/healthz`` and ``/readyz`` by itself.
"""

from __future__ import annotations

import http

import portside


async def echo(websocket: portside.ServerConnection, path: str) -> None:
    """Programs 1 and 3: echo every message."""
    async for message in websocket:
        await websocket.send(message)


async def echo_legacy(websocket: portside.ServerConnection, path: str) -> None:
    """Program 2: the same, written for Python versions before ``async for``."""
    while True:
        try:
            msg = await websocket.recv()
        except portside.ConnectionClosed:
            break
        else:
            await websocket.send(msg)


def health_check(
    path: str, request_headers: portside.Headers
) -> tuple[int, list[tuple[str, str]], bytes] | None:
    """Program 3's health check, in the older ``(path, request_headers)`` form."""
    if path == "/health/":
        return http.HTTPStatus.OK, [], b"OK\n"
    return None


app = portside.App(echo, process_request=health_check)
