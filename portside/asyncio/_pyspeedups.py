"""Pure-Python twin of ``portside/asyncio/_speedups``: the receive path of a connection.

The C twin is built from ``portside/asyncio/_speedups_*.c``; ``_speedups.h`` says
which file holds what.

:mod:`portside.asyncio.speedups` picks the C version when it is built, unless
``PORTSIDE_NO_SPEEDUPS=1``. ``tests/asyncio/test_speedups.py`` runs both.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ConnectionBase"]

_COUNTER_MAX = 2**63 - 1


class ConnectionBase:
    """Hands received messages to the coroutine waiting for one.

    Subclasses (:class:`~portside.asyncio.connection.Connection`) provide
    ``recv()``, ``_receive_handshake(nbytes)``, ``_enqueue(message)``,
    ``_on_event(event, alone)`` and ``_write_all(frames)``; ``protocol`` is the
    sans-I/O protocol, ``_waiter`` the future of the coroutine blocked in
    ``recv()`` (or ``None``), ``_handshaking`` whether received bytes belong to
    the opening handshake. The other slots are the connection's, kept here so
    that the C twin's ``recv()`` and ``send()`` read them without a lookup.

    ``_write_barrier`` is ``None`` or a callable without arguments that every
    write to the transport calls first: ``send()``, ``ping()``, ``pong()``,
    ``close()``, ``_write_frame()`` (:func:`~portside.broadcast`), the keepalive
    ping and ``_write_all()``. The pub/sub hub (:mod:`portside.hub`) makes it write
    the frames it deferred for the connection, so that they go out before
    anything written after them. It must not raise; if it does, the write raises
    the exception and writes nothing. It may be called more than once per write.
    """

    __slots__ = (
        "_fragmenting",
        "_handshaking",
        "_messages",
        "_pending_error",
        "_reading_paused",
        "_waiter",
        "_write_barrier",
        "_write_paused",
        "bytes_received",
        "bytes_sent",
        "loop",
        "messages_received",
        "messages_sent",
        "protocol",
        "transport",
    )

    #: What the connection does on its socket itself: nothing here. The C twin
    #: has 1 (reads and writes, asyncio's selector transport) or 2 (writes,
    #: uvloop's) once :meth:`_hook_transport` took the transport.
    _direct_io = 0

    protocol: Any
    _waiter: Any
    _handshaking: bool
    loop: Any
    transport: Any
    _messages: Any
    _pending_error: Any
    _fragmenting: Any
    _reading_paused: bool
    _write_paused: bool
    _write_barrier: Any
    #: Traffic since the opening handshake, for access logs and metrics: data
    #: messages, and bytes of frames as on the wire (control frames included).
    messages_received: int
    messages_sent: int
    bytes_received: int
    bytes_sent: int

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        # The counters start at 0, as the C twin's fields do, whatever __init__ does.
        if (args or kwargs) and cls.__init__ is object.__init__:
            raise TypeError(f"{cls.__name__}() takes no arguments")
        self = super().__new__(cls)
        self.messages_received = self.messages_sent = 0
        self.bytes_received = self.bytes_sent = 0
        # None, as the C twin's reads while it holds no barrier.
        self._write_barrier = None
        return self

    def __anext__(self) -> Any:
        # recv() ends the iteration itself on a normal closure: one coroutine
        # per message instead of two.
        return self.recv(_iterating=True)  # type: ignore[attr-defined]

    def buffer_updated(self, nbytes: int, /) -> None:
        """Process ``nbytes`` received (:class:`asyncio.BufferedProtocol`)."""
        if self._handshaking:
            self._receive_handshake(nbytes)
            return
        if nbytes.__class__ is int and 0 <= nbytes <= _COUNTER_MAX:
            # What the C twin counts: a non-negative int that fits its counter.
            self.bytes_received += nbytes
        protocol = self.protocol
        events = protocol.buffer_updated(nbytes)
        for event in events:
            cls = event.__class__
            if cls is bytes or cls is str:
                self.messages_received += 1
                waiter = self._waiter
                if waiter is not None:
                    self._waiter = None
                    if not waiter.done():
                        waiter.set_result(event)
                        continue
                self._enqueue(event)
            else:
                self._on_event(event, len(events) == 1)
        if protocol._out:
            self._write_all(protocol.data_to_send())

    def _receive_handshake(self, nbytes: int, /) -> None:
        raise NotImplementedError  # pragma: no cover

    def _enqueue(self, message: Any, /) -> None:
        raise NotImplementedError  # pragma: no cover

    def _on_event(self, event: Any, alone: bool, /) -> None:
        raise NotImplementedError  # pragma: no cover

    def _write_all(self, frames: list[bytes], /) -> None:
        raise NotImplementedError  # pragma: no cover

    def _write_frame(self, frame: bytes, /) -> None:
        """Write an encoded frame as ``transport.write(frame)`` would.

        The C twin writes on the socket itself when ``write()`` would send the
        frame at once; :func:`~portside.asyncio.server.broadcast` writes with it.
        """
        if frame.__class__ is not bytes:
            raise TypeError(f"_write_frame() takes bytes, not {type(frame).__name__}")
        barrier = self._write_barrier
        if barrier is not None:
            barrier()
        self.transport.write(frame)

    def _hook_transport(self) -> bool:
        """Read and write on the socket directly: the C twin's alone; ``False`` here."""
        return False

    def _unhook_transport(self) -> None:
        """Undo :meth:`_hook_transport`."""
