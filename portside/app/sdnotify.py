"""systemd's readiness protocol: datagrams to ``$NOTIFY_SOCKET``, written by hand.

``sd_notify(3)`` is a datagram of ``KEY=value`` lines sent to the Unix socket
named by ``NOTIFY_SOCKET`` (an abstract socket when the name starts with ``@``).
It needs no library. Only the supervisor notifies: it removes ``NOTIFY_SOCKET``
from the environment its workers inherit.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import MutableMapping

__all__ = ["Notifier"]

logger = logging.getLogger("portside.app")


class Notifier:
    """Sends ``READY=1``, ``RELOADING=1``, ``STOPPING=1`` and ``STATUS=`` to systemd.

    Does nothing when ``NOTIFY_SOCKET`` is not set.

    Args:
        environ: The environment to read ``NOTIFY_SOCKET`` from; it is removed
            from it, so that child processes do not notify in our name.
    """

    def __init__(self, environ: MutableMapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        address = environ.pop("NOTIFY_SOCKET", "")
        self.address: str | None = None
        if address.startswith("@"):
            self.address = "\0" + address[1:]
        elif address.startswith("/"):
            self.address = address
        elif address:
            logger.warning("NOTIFY_SOCKET=%r is not a Unix socket path: ignored", address)

    @property
    def enabled(self) -> bool:
        """Whether ``NOTIFY_SOCKET`` was set."""
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        """Send one datagram made of ``lines``; return whether it was sent."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            logger.warning("sd_notify to %s failed: %s", self.address.lstrip("\0"), exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        """The service is up (or a reload is done)."""
        return self.notify("READY=1", f"STATUS={status}")

    def reloading(self, status: str) -> bool:
        """A rolling restart started (``Type=notify-reload`` wants ``MONOTONIC_USEC``)."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}", f"STATUS={status}")

    def stopping(self, status: str) -> bool:
        """The service is shutting down."""
        return self.notify("STOPPING=1", f"STATUS={status}")

    def status(self, status: str) -> bool:
        """A free-form status line for ``systemctl status``."""
        return self.notify(f"STATUS={status}")
