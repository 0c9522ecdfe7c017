"""The line protocol between the supervisor and each worker, over a socket pair.

Each side sends JSON objects, one per line, with an ``"event"`` key:

- worker to supervisor: ``beat`` (the event loop turns), ``ready`` (accepting
  connections), ``fatal`` (``status``, ``message``: failed to start), ``recycle``
  (``cause``: a ``--worker-max-*`` limit was reached: please replace me),
  ``stop_request`` (SIGTERM or SIGINT reached the worker: please replace me,
  then tell me to drain), ``draining`` (accepting stopped);
- supervisor to worker: ``drain`` (``code``: close connections with it and
  exit), ``stop_now``, ``reopen_logs``.

End of file means the other side is gone: a worker whose supervisor died drains
and exits.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import Callable
from typing import Any

__all__ = ["Channel"]

logger = logging.getLogger("portside.app")

MAX_LINE = 1 << 20
"""The longest message; a longer one is dropped (only a broken peer sends one)."""
READ_SIZE = 1 << 16


class Channel:
    """One end of a worker's socket pair, driven by an event loop.

    Args:
        sock: This end of the pair.
        on_message: Called with each object received.
        on_eof: Called once when the other end is gone.
    """

    def __init__(
        self,
        sock: socket.socket,
        on_message: Callable[[dict[str, Any]], None],
        on_eof: Callable[[], None],
    ) -> None:
        self.sock = sock
        sock.setblocking(False)
        self.on_message = on_message
        self.on_eof = on_eof
        self._buffer = bytearray()
        self._out = bytearray()
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._writing = False

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start reading in ``loop``."""
        self._loop = loop
        loop.add_reader(self.sock.fileno(), self._read)

    def _read(self) -> None:
        try:
            data = self.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.close()
            self.on_eof()
            return
        self._buffer += data
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_LINE:  # pragma: no cover - a broken peer
                    self._buffer.clear()
                return
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            try:
                message = json.loads(line)
            except ValueError:  # pragma: no cover - a broken peer
                logger.warning("ignored a malformed message from a worker: %r", line[:80])
                continue
            if isinstance(message, dict):
                self.on_message(message)

    def send(self, event: str, **fields: Any) -> None:
        """Send one message; never blocks (what the socket cannot take waits)."""
        if self._closed:
            return
        self._out += json.dumps({"event": event, **fields}).encode() + b"\n"
        self._flush()

    def _flush(self) -> None:
        try:
            sent = self.sock.send(self._out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._out.clear()
            return
        del self._out[:sent]
        if self._out and not self._writing and self._loop is not None:
            self._writing = True
            self._loop.add_writer(self.sock.fileno(), self._write_ready)

    def _write_ready(self) -> None:
        self._flush()
        if not self._out and self._loop is not None:
            self._writing = False
            self._loop.remove_writer(self.sock.fileno())

    def close(self) -> None:
        """Stop reading and writing; close the socket."""
        if self._closed:
            return
        self._closed = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self.sock.fileno())
            if self._writing:
                self._loop.remove_writer(self.sock.fileno())
        self.sock.close()
