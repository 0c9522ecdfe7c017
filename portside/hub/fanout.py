"""Local fan-out: messages to many connections of this process, and when.

The only place where the hub writes messages to its subscribers' connections.
One message goes through :func:`~portside.broadcast`, which builds each frame
once; several (a burst published within one iteration of the event loop) go
out in one write per subscriber.

The hub defers those writes to the end of the loop's iteration, so that a burst
is written at once. :class:`Flusher` runs them then, or earlier: it is the
*write barrier* of every subscriber's connection, which the connection calls
before it writes anything else (``send()``, ``ping()``, ``close()``,
:func:`~portside.broadcast`...). So what the hub was given first goes out first,
and the frames on a connection keep the order in which the program made them.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Collection, Sequence
from typing import Any

from ..asyncio.broadcasting import SlowConsumerPolicy, broadcast
from ..asyncio.connection import Connection
from ..protocol.connection import SERVER
from ..protocol.speedups import encode_frame
from ..protocol.state import OPEN

__all__ = ["Flusher", "fan_out", "flusher_for", "writable"]

_flushers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Flusher] = (
    weakref.WeakKeyDictionary()
)


def flusher_for(loop: asyncio.AbstractEventLoop) -> Flusher:
    """The :class:`Flusher` of ``loop``, shared by the hubs that run on it."""
    flusher = _flushers.get(loop)
    if flusher is None:
        flusher = _flushers[loop] = Flusher()
    return flusher


class Flusher:
    """Runs the hubs' deferred writes of one event loop, and is their connections' barrier.

    A hub hands :meth:`schedule` a function that writes what it collected;
    it runs at the end of the loop's iteration (``call_soon``), or as soon as
    a connection that some hub subscribed writes anything (:meth:`barrier`),
    whichever comes first, and once. The hub writes with :meth:`write`, during
    which barriers do nothing: its own writes do not recurse.

    Scheduled functions must not raise: the barrier runs them inside another
    write of the application's (the hub catches and logs what they raise).
    """

    __slots__ = ("__weakref__", "_handle", "_hubs", "_maker", "_pending", "_writing", "barrier")

    def __init__(self) -> None:
        self._pending: list[Callable[[], None]] = []
        self._handle: asyncio.Handle | None = None
        self._writing = False
        self._maker: Any = None  # the hub that deferred the last frame
        # Hubs (one per process, as a rule) that made this their connections'
        # barrier: the barrier stays while one of them has the connection.
        self._hubs: weakref.WeakSet[Any] = weakref.WeakSet()
        #: What connections call before each write; the same object for all,
        #: so that it is known for this flusher's.
        self.barrier: Callable[[], None] = self._barrier

    def schedule(self, flush: Callable[[], None]) -> None:
        """Run ``flush`` at the end of this iteration of the loop, or at a barrier before."""
        self._pending.append(flush)
        if self._handle is None:
            self._handle = asyncio.get_running_loop().call_soon(self._run)

    def deferring(self, hub: Any) -> None:
        """``hub`` defers a frame: what other hubs deferred before goes out first."""
        if self._maker is not hub:
            if self._maker is not None:
                # Two hubs on one loop (one per process is the rule): their
                # frames to a connection keep their order too.
                self._barrier()
            self._maker = hub

    def _barrier(self) -> None:
        # Cheap when nothing waits: a connection calls it before every write.
        handle = self._handle
        if handle is not None and not self._writing:
            handle.cancel()
            self._run()

    def _run(self) -> None:
        self._handle = None
        self._maker = None
        pending, self._pending = self._pending, []
        for flush in pending:
            flush()

    def write(
        self, connections: Collection[Connection], messages: Sequence[str | bytes]
    ) -> list[Connection]:
        """:func:`fan_out`, the barriers of ``connections`` holding back meanwhile."""
        writing, self._writing = self._writing, True
        try:
            return fan_out(connections, messages)
        finally:
            self._writing = writing

    def attach(self, hub: Any, connection: Connection) -> None:
        """``hub`` subscribed ``connection``: writes on it run this barrier first."""
        self._hubs.add(hub)
        connection._write_barrier = self.barrier

    def detach(self, connection: Connection) -> None:
        """A hub let ``connection`` go: the barrier goes once no hub has it."""
        if connection._write_barrier is self.barrier and not any(
            connection in hub._members for hub in self._hubs
        ):
            connection._write_barrier = None


def writable(connection: Connection) -> bool:
    """Whether ``connection`` can take a message now: open, and its backlog not full.

    The backlog is what the transport holds unsent; it is full above the
    connection's ``write_limit`` and stays full until it drained to a quarter
    of it.
    """
    return connection.protocol.state is OPEN and not connection._write_paused


class _Remember(SlowConsumerPolicy):
    """Skips a full connection (never closes it) and remembers it for the hub."""

    def __init__(self) -> None:
        super().__init__()
        self.connections: list[Connection] = []

    def skip(self, connection: Connection) -> None:
        super().skip(connection)  # counted in connection.broadcast_skips
        self.connections.append(connection)


def fan_out(
    connections: Collection[Connection], messages: Sequence[str | bytes]
) -> list[Connection]:
    """Send ``messages``, in order, to each connection whose backlog is not full.

    Args:
        connections: The subscribers.
        messages: Text (``str``) or binary (``bytes``) messages.

    Returns:
        The open connections skipped because their backlog was full (or, for
        a burst, because they were sending a fragmented message). Those closing
        or closed are left out silently: they are going away.
    """
    if len(messages) == 1:
        policy = _Remember()
        broadcast(connections, messages[0], policy=policy)
        return policy.connections
    skipped: list[Connection] = []
    # RFC 6455 5.2: FIN set, one frame per message, unmasked from a server;
    # the same bytes for every server connection that does not compress.
    shared = b"".join(
        encode_frame(0x81, message.encode(), None)
        if isinstance(message, str)
        else encode_frame(0x82, message, None)
        for message in messages
    )
    for connection in connections:
        protocol = connection.protocol
        if protocol.state is not OPEN:
            continue
        if connection._write_paused or protocol._sending:
            # RFC 6455 5.4: nothing may come between the frames of a fragmented
            # message; a full backlog takes nothing more.
            connection.broadcast_skips += len(messages)
            skipped.append(connection)
            continue
        try:
            if protocol.deflate is None and protocol.side is SERVER:
                connection._write_frame(shared)
            else:
                for message in messages:
                    if isinstance(message, str):
                        frames = protocol.send_text(message)
                    else:
                        frames = protocol.send_binary(message)
                    connection._writelines(frames)  # see there: CPython gh-127655
        except Exception as exc:
            # As broadcast(): one connection's failure is not the others'.
            connection.logger.warning("skipped hub messages: failed to write: %r", exc)
    return skipped
