"""Events that a connection reports besides data messages.

Data messages come out of :meth:`Protocol.receive_data` as plain ``str`` (text)
and ``bytes`` (binary) objects, which keeps the common case free of wrappers.
Beside them:

- :class:`Ping` and :class:`Pong`: control frames received;
- :class:`~portside.protocol.close.Close`: the peer's Close frame;
- :class:`Fragment`: one frame of a fragmented message, when the reader was
  asked for them (``emit_fragments``);
- a :class:`~portside.exceptions.ProtocolError`: the peer broke the protocol.
  It comes after the messages that arrived before the error, so the
  application may handle them before the connection is failed with
  :meth:`Protocol.fail`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

__all__ = ["Fragment", "Ping", "Pong"]


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


@dataclass(frozen=True)
class Fragment:
    """One frame of a fragmented data message (only with ``emit_fragments``).

    The fragments of a message come in order, the last one with ``fin`` set;
    joined, they make the message.

    Attributes:
        data: ``str`` for a text message (already validated UTF-8; a character
            cut by a frame boundary belongs to the fragment that completes it),
            ``bytes`` for a binary one.
        fin: Whether this is the last fragment of the message.
    """

    data: Union[str, bytes]
    fin: bool
