"""Events that a connection reports besides data messages.

Data messages come out of :meth:`Protocol.receive_data` as plain ``str`` (text)
and ``bytes`` (binary) objects, which keeps the common case free of wrappers.
Beside them:

- :class:`Ping` and :class:`Pong`: control frames received;
- :class:`~portside.protocol.close.Close`: the peer's Close frame;
- a :class:`~portside.exceptions.ProtocolError`: the peer broke the protocol.
  It comes after the messages that arrived before the error, so the
  application may handle them before the connection is failed with
  :meth:`Protocol.fail`.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Ping", "Pong"]


@dataclass(frozen=True)
class Ping:
    """A Ping frame was received; the Pong answer is already queued.

    Attributes:
        data: The application data of the ping.
    """

    data: bytes


@dataclass(frozen=True)
class Pong:
    """A Pong frame was received.

    Attributes:
        data: The application data of the pong.
        acknowledged: The payloads of the pings this pong answers: the matching
            ping and every ping sent before it (RFC 6455 5.5.3 lets a peer answer
            only the latest of several pings). Empty for an unsolicited pong.
    """

    data: bytes
    acknowledged: tuple[bytes, ...] = ()
