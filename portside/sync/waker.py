"""Waking a thread blocked in ``poll()``: a pipe it watches besides its socket."""

from __future__ import annotations

import contextlib
import os
import threading

__all__ = ["Waker"]


class Waker:
    """A self-pipe: :meth:`wake` makes the read end readable until :meth:`drain`.

    Attributes:
        fd: The file descriptor to watch for reading.
    """

    def __init__(self) -> None:
        self.fd, self._write_fd = os.pipe()
        os.set_blocking(self.fd, False)
        os.set_blocking(self._write_fd, False)
        self._closed = False
        # A descriptor number is reused once closed: never write after close().
        self._lock = threading.Lock()

    def wake(self) -> None:
        """Make the watched end readable (from any thread); nothing once closed."""
        with self._lock:
            if self._closed:
                return
            # BlockingIOError: the pipe is full, a wake-up is pending anyway.
            with contextlib.suppress(BlockingIOError):
                os.write(self._write_fd, b"\0")

    def drain(self) -> None:
        """Consume the pending wake-ups."""
        try:
            while os.read(self.fd, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def close(self) -> None:
        """Close both ends."""
        with self._lock:
            if not self._closed:
                self._closed = True
                os.close(self.fd)
                os.close(self._write_fd)
