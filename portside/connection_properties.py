"""The read-only properties of a connection that both I/O layers' connections share.

:class:`ConnectionProperties` reads them from the connection's sans-I/O
:class:`~portside.protocol.Protocol`; ``portside.asyncio.connection.Connection``
and ``portside.sync.connection.Connection`` inherit it. Each layer adds what
depends on its I/O (the socket's addresses, for one).
"""

from __future__ import annotations

import uuid
from typing import Any, Union, cast

from .protocol.connection import Protocol
from .protocol.state import State

__all__ = ["ConnectionProperties", "peer_name"]


def peer_name(address: Any) -> str:
    """Name a peer in log lines: ``host:port`` for an IP address, else the address.

    Args:
        address: As ``socket.getpeername()`` returns it (a Unix socket's may
            be empty); ``None`` when unknown.
    """
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address or "peer")


class ConnectionProperties:
    """Properties of a connection, read from its ``protocol``."""

    protocol: Protocol
    _id: uuid.UUID | None

    @property
    def id(self) -> uuid.UUID:
        """A unique identifier of the connection, for logs."""
        if self._id is None:
            self._id = uuid.uuid4()
        return self._id

    @property
    def state(self) -> State:
        """The :class:`~portside.protocol.State` of the connection."""
        return self.protocol.state

    @property
    def subprotocol(self) -> str | None:
        """The negotiated subprotocol, or ``None``."""
        return cast(Union[str, None], getattr(self.protocol, "subprotocol", None))

    @property
    def close_code(self) -> int | None:
        """The close code received; ``None`` while the connection is open.

        1005 stands for a Close frame without a code, 1006 for no Close frame.
        """
        # The protocol is CLOSED once the TCP connection is lost: the I/O layer
        # calls its receive_eof() then.
        return self.protocol.close_code

    @property
    def close_reason(self) -> str | None:
        """The close reason received; ``None`` while the connection is open."""
        return self.protocol.close_reason
