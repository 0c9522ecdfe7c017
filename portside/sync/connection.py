"""A WebSocket connection on threads and blocking sockets: the ``ws`` object of the threading API.

:class:`Connection` drives a sans-I/O :class:`~portside.protocol.Protocol` with
a blocking socket and two kinds of threads:

- the application's threads, which call :meth:`~Connection.recv`,
  :meth:`~Connection.send`, :meth:`~Connection.ping` and
  :meth:`~Connection.close`;
- one background thread per connection, which reads the socket while the
  application does not, answers Pings, completes the closing handshake, sends
  keepalive Pings, enforces the timeouts, and closes the socket in the end.

**Who reads the socket.** Reading is a role that one thread holds at a time. A
thread in ``recv()`` that finds no message queued takes the role and reads the
socket itself, so that a message goes from the kernel to the caller without
passing from one thread to another. The background thread leaves the socket to
the application while it keeps calling ``recv()``: it reads only once the
application has not called ``recv()`` for ``READ_LEASE`` seconds, or at once
when something must be read (the peer's Close frame after ``close()``, the Pong
of a keepalive Ping), so that Pings and Close frames are answered even when the
application never calls ``recv()``. Whoever reads hands every event to the same
code: messages go to a queue, Pongs to the pings they acknowledge, and Close
frames and protocol errors drive the closing handshake.

**Who writes.** Frames are written in the order in which the protocol produced
them. ``send()`` holds the write lock, produces its frames and writes them with
blocking calls: it returns once the kernel took every byte, so nothing of a
message stays buffered in portside. Frames produced while reading (Pongs, Close
replies) go to a queue: written at once without blocking when nobody is
writing, else by the thread that holds the write lock, after its own frames.
The background thread writes what the socket did not take as soon as it can.

**Locks.** ``_lock`` guards the protocol, the queues and the state (and the TLS
object, through the transport); no I/O happens under it. ``_write_lock`` is held
while writing; ``_send_lock`` makes whole messages, including fragmented ones,
go out one at a time.

Flow control, all per connection:

- ``max_size``: the largest message; a larger one fails the connection (1009).
- ``max_queue``: messages (and fragments) received and not yet read. Past it,
  nobody reads the socket and TCP pushes back on the peer; reading resumes once
  the application drained the queue to a quarter (or to the low water mark
  given as ``(high, low)``).
- ``read_limit``: the most bytes taken from the socket in one read.
- ``write_limit``: control frames (Pongs, Close replies) queued while the
  socket does not take more bytes; past it, reading stops until they are
  written, so a peer that sends Pings without reading cannot grow the queue.
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import os
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, NoReturn, TypeVar, Union, cast, overload

from ..connection_properties import ConnectionProperties, peer_name
from ..exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedOK,
    ProtocolError,
)
from ..protocol.close import Close
from ..protocol.connection import SERVER, Protocol
from ..protocol.events import Fragment, Pong
from ..protocol.options import ConnectionOptions
from ..protocol.state import CLOSED, CONNECTING, OPEN
from .messages import Item, MessageQueue, queue_limits
from .transport import Transport
from .waker import Waker

if TYPE_CHECKING:  # pragma: no cover
    from ..protocol.http11 import Request, Response

__all__ = ["Connection", "Data", "READ_LEASE"]

Data = Union[str, bytes]
"""A message: ``str`` for text, ``bytes`` for binary."""
BytesLike = Union[bytes, bytearray, memoryview]
Sendable = Union[str, BytesLike]
"""What :meth:`Connection.send` takes, alone or as the fragments of an iterable."""

_C = TypeVar("_C", bound="Connection")

#: Seconds the background thread leaves the socket to an application that is
#: calling ``recv()``, before it reads in the application's stead.
READ_LEASE = 0.05

# Who holds the reading role.
_APP = "application"
_BACKGROUND = "background"
_DONE = "done"

_POLLIN = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP
_POLLOUT = select.POLLOUT

_utf8_decoder = codecs.getincrementaldecoder("utf-8")


def _control_payload(data: Sendable) -> bytes:
    """The payload of a Ping or Pong: ``str`` UTF-8 encoded, bytes-like as bytes."""
    if isinstance(data, str):
        return data.encode()
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"data must be str or bytes-like, not {type(data).__name__}")


class Connection(ConnectionProperties):
    """A WebSocket connection, either side, on threads: the ``ws`` object of the API.

    Not created directly: :func:`~portside.sync.server.serve` hands one to each
    handler and :func:`~portside.sync.client.connect` returns one.

    Iterating with ``for`` yields messages until the connection closes
    normally; a closure with an error raises :class:`ConnectionClosedError`.

    Args:
        transport: The connection's :class:`~portside.sync.transport.Transport`,
            or a connected plain socket.
        protocol: The sans-I/O protocol.
        max_queue: As for ``connect()`` and ``serve()``.
        write_limit: As for ``connect()`` and ``serve()``.
        ping_interval: As for ``connect()`` and ``serve()``.
        ping_timeout: As for ``connect()`` and ``serve()``.
        close_timeout: As for ``connect()`` and ``serve()``.
        logger: The connection's logger; ``None``: ``portside.client`` or
            ``portside.server``, by the protocol's side.
    """

    protocol: Protocol
    request: Request | None
    """The opening request (HTTP)."""
    response: Response | None
    """The answer to the opening request (HTTP)."""

    def __init__(
        self,
        transport: Transport | socket.socket,
        protocol: Protocol,
        *,
        max_queue: int | tuple[int | None, int | None] | None = 16,
        write_limit: int = 2**16,
        ping_interval: float | None = 20,
        ping_timeout: float | None = 20,
        close_timeout: float | None = 10,
        logger: logging.Logger | logging.LoggerAdapter[Any] | None = None,
    ) -> None:
        if not isinstance(transport, Transport):
            transport = Transport(transport)
        if logger is None:
            side = "server" if protocol.side is SERVER else "client"
            logger = logging.getLogger(f"portside.{side}")
        self.protocol = protocol
        protocol.emit_fragments = True  # for recv_streaming(); recv() joins them
        self.transport = transport
        # Plain sockets are read and written directly on the hot paths.
        self._plain = not transport.secure
        self.socket = transport.sock
        """The socket (TLS, when used, is not on it: see ``transport``)."""
        self.logger = logger
        """The connection's logger."""
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.write_limit = write_limit
        self.request = None
        self.response = None
        self.latency = 0.0
        """Round-trip time of the last Ping answered, in seconds (0 before one)."""
        self.broadcast_skips = 0
        """Messages ``broadcast()`` skipped because the connection could not keep up."""
        self._extra = transport.extra()
        self._id: uuid.UUID | None = None

        self._lock = transport.lock
        self._cond = threading.Condition(self._lock)
        self._send_lock = threading.Lock()
        self._write_lock = threading.Lock()
        # Frames to write, in the order the protocol produced them (under _lock);
        # bytes a write without blocking left over (under _write_lock).
        self._outq: list[bytes] = []
        self._outq_size = 0
        self._unsent: list[Any] = []
        self._unsent_size = 0

        high, low = queue_limits(max_queue)
        self._messages = MessageQueue(high, low)
        self._receiving = False  # a thread is in recv() or recv_streaming()
        self._recv_calls = 0  # recv() calls so far, for the background thread
        self._discarding = False  # skip the rest of a message recv_streaming() left
        self._reader: str | None = None  # who holds the reading role
        self._waiters = 0  # threads waiting on _cond
        self._deep_sleep = False  # the background thread waits for recv() to return

        self._pending_error: ProtocolError | None = None
        self._error_deadline: float | None = None
        self._pings: dict[bytes, tuple[threading.Event, float, bool]] = {}
        self._keepalive_ping: bytes | None = None
        self._keepalive_at: float | None = None
        self._keepalive_deadline: float | None = None
        self._close_deadline: float | None = None  # abort TCP then
        self._close_tcp = False  # server: close TCP once the output is written
        self._lost = False  # the TCP connection is over
        self._lost_exc: BaseException | None = None
        self._closed = threading.Event()  # the socket is closed
        self._waker = Waker()
        self._thread: threading.Thread | None = None

    # Properties.

    @property
    def local_address(self) -> Any:
        """The local socket address, as ``socket.getsockname()`` returns it."""
        return self._extra["sockname"]

    @property
    def remote_address(self) -> Any:
        """The peer's socket address, as ``socket.getpeername()`` returns it."""
        return self._extra["peername"]

    # Context manager and iteration.

    def __enter__(self: _C) -> _C:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # RFC 6455 7.4.1: 1011 when leaving because of an error.
        self.close(1000 if exc_type is None else 1011)

    def __iter__(self) -> Iterator[Data]:
        """Yield messages until the connection closes normally.

        Raises:
            ConnectionClosedError: When the connection closes with an error.
        """
        try:
            while True:
                yield self.recv()
        except ConnectionClosedOK:
            return

    # Receiving.

    @overload
    def recv(self, timeout: float | None, decode: Literal[True]) -> str: ...

    @overload
    def recv(self, timeout: float | None, decode: Literal[False]) -> bytes: ...

    @overload
    def recv(self, timeout: float | None = None, *, decode: Literal[True]) -> str: ...

    @overload
    def recv(self, timeout: float | None = None, *, decode: Literal[False]) -> bytes: ...

    @overload
    def recv(self, timeout: float | None = None, decode: bool | None = None) -> Data: ...

    def recv(self, timeout: float | None = None, decode: bool | None = None) -> Data:
        """Return the next message: ``str`` for text, ``bytes`` for binary.

        A fragmented message is returned whole, once its last fragment arrived.

        Args:
            timeout: Seconds to wait for a message; ``None`` waits as long as
                it takes; 0 or less returns a message already received or
                raises :exc:`TimeoutError` at once.
            decode: ``False`` returns text as UTF-8 ``bytes``; ``True`` decodes
                binary messages as UTF-8 (invalid UTF-8 then fails the
                connection with 1007); ``None`` returns each as it came.

        Raises:
            ConnectionClosedOK: When the connection closed normally, after
                every message received before was returned.
            ConnectionClosedError: When it closed with an error.
            ConcurrencyError: If another thread is in :meth:`recv` or
                :meth:`recv_streaming`.
            TimeoutError: If no whole message arrived within ``timeout``.
        """
        with self._lock:
            if self._receiving:
                raise ConcurrencyError(
                    "cannot call recv while another thread is already running "
                    "recv or recv_streaming"
                )
            messages = self._messages
            if messages and not self._discarding:
                cls = messages.first().__class__
                if cls is str or cls is bytes:
                    # The common case: a whole message is waiting.
                    message, resume = messages.pop()
                    if resume:
                        self._waker.wake()
                    if decode is None:
                        return message  # type: ignore[return-value]
                    fast = True
                else:
                    fast = False
            else:
                fast = False
            direct = False
            if not fast:
                self._receiving = True
                self._recv_calls += 1
                if (
                    timeout is None
                    and self._reader is None
                    and self._pending_error is None
                    and self.protocol._reading
                    and not self._discarding
                    and self._outq_size + self._unsent_size <= self.write_limit
                ):
                    # Nothing queued and nobody reading: read the socket here.
                    self._reader = _APP
                    direct = True
        if fast:
            return self._convert(cast(Data, message), cast(bool, decode))
        if direct:
            read = self._read_message()
            if read is not None:
                if decode is None:
                    return read
                return self._convert(read, decode)
        deadline = None if timeout is None else time.monotonic() + timeout
        fragments: list[Fragment] = []
        try:
            while True:
                try:
                    item = self._next_item(deadline)
                except TimeoutError:
                    if fragments:
                        # What was taken of the message goes back, for later.
                        with self._lock:
                            self._messages.put_back(fragments)
                    raise TimeoutError(f"no message within {timeout:g} seconds") from None
                if item.__class__ is not Fragment:
                    message = item
                    break
                fragment = item
                fragments.append(fragment)
                if not fragment.fin:
                    # Take the fragments already queued in one go.
                    with self._lock:
                        messages = self._messages
                        while messages and messages.first().__class__ is Fragment:
                            fragment = cast(Fragment, messages.pop()[0])
                            fragments.append(fragment)
                            if fragment.fin:
                                break
                if fragment.fin:
                    message = _join(fragments)
                    break
        finally:
            self._end_receiving()
        if decode is None:
            return cast(Data, message)
        return self._convert(cast(Data, message), decode)

    @overload
    def recv_streaming(self, decode: Literal[True]) -> Iterator[str]: ...

    @overload
    def recv_streaming(self, decode: Literal[False]) -> Iterator[bytes]: ...

    @overload
    def recv_streaming(self, decode: bool | None = None) -> Iterator[Data]: ...

    def recv_streaming(self, decode: bool | None = None) -> Iterator[Data]:
        """Receive the next message one fragment at a time, as the fragments arrive.

        The iterator yields ``str`` for a text message, ``bytes`` for a binary
        one: the whole message when it came in one frame, else each fragment
        as it arrives (a UTF-8 character cut by a frame boundary comes with
        the fragment that completes it). Until it is exhausted, other calls to
        :meth:`recv` or :meth:`recv_streaming` raise
        :exc:`~portside.ConcurrencyError`. Abandoning it early (``break``,
        or letting it be collected) skips the rest of the message.

        Args:
            decode: As for :meth:`recv`.

        Raises:
            ConnectionClosed: As :meth:`recv`.
            ConcurrencyError: As :meth:`recv`.
        """
        with self._lock:
            if self._receiving:
                raise ConcurrencyError(
                    "cannot call recv_streaming while another thread is already "
                    "running recv or recv_streaming"
                )
            self._receiving = True
            self._recv_calls += 1
        finished = False
        started = False
        try:
            item = self._next_item(None)
            started = True
            if item.__class__ is not Fragment:
                finished = True
                yield (
                    cast(Data, item) if decode is None else self._convert(cast(Data, item), decode)
                )
                return
            fragment = item
            text = fragment.data.__class__ is str
            decoder = _utf8_decoder() if decode and not text else None
            while True:
                data = fragment.data
                if decoder is not None:
                    try:
                        data = decoder.decode(cast(bytes, data), fragment.fin)
                    except UnicodeDecodeError as exc:
                        finished = fragment.fin
                        self._fail_decoding(exc)
                elif decode is False and text:
                    data = cast(str, data).encode()
                finished = fragment.fin
                yield data
                if finished:
                    return
                fragment = cast(Fragment, self._next_item(None))
        finally:
            if started and not finished:
                with self._lock:
                    # The rest of this message is of no use to anyone.
                    self._discarding = True
            self._end_receiving()

    def _end_receiving(self) -> None:
        with self._lock:
            self._receiving = False
            if self._deep_sleep:
                # The background thread waits for this recv() to return.
                self._deep_sleep = False
                self._waker.wake()

    def _wait(self, timeout: float | None) -> None:
        """Wait on the condition (under the lock)."""
        self._waiters += 1
        try:
            self._cond.wait(timeout)
        finally:
            self._waiters -= 1

    def _notify(self) -> None:
        """Wake the threads waiting on the condition, if any (under the lock)."""
        if self._waiters:
            self._cond.notify_all()

    def _convert(self, message: Data, decode: bool) -> Data:
        if decode:
            if message.__class__ is bytes:
                try:
                    return message.decode()
                except UnicodeDecodeError as exc:
                    self._fail_decoding(exc)
        elif message.__class__ is str:
            return message.encode()
        return message

    def _fail_decoding(self, exc: UnicodeDecodeError) -> None:
        """``decode=True`` met invalid UTF-8: fail with 1007 (RFC 6455 8.1)."""
        with self._lock:
            self._fail(1007, f"{exc.reason} at position {exc.start}")
            error = self._closed_error()
        self._flush_nowait()
        raise error from exc

    def _read_message(self) -> Data | None:
        """Read once, holding the reading role; return the message if that is all that came.

        The common case of ``recv()``. Otherwise -- several events, something
        else than one whole message, end of stream -- act on what came, and
        return ``None`` with ``_receiving`` still set: ``recv()`` goes on.
        """
        protocol = self.protocol
        buffer = protocol.get_buffer()
        error: OSError | None = None
        try:
            if self._plain:
                count = self.socket.recv_into(buffer)
            else:
                count = self.transport.recv_into(buffer)
        except OSError as exc:
            count = 0
            error = exc
        with self._lock:
            self._reader = None
            if count:
                events = protocol.buffer_updated(count)
                if len(events) == 1 and not protocol._out:
                    message = events[0]
                    cls = message.__class__
                    if cls is str or cls is bytes:
                        self._receiving = False
                        if self._waiters:
                            self._cond.notify_all()
                        if self._deep_sleep:
                            self._deep_sleep = False
                            self._waker.wake()
                        return message  # type: ignore[no-any-return]
                if events:
                    self._dispatch(events)
            else:
                self._connection_lost(error)
            self._notify()
            flush = bool(self._outq) or self.transport.has_output()
        if flush:
            self._flush_nowait()
        return None

    def _next_item(self, deadline: float | None) -> Item:
        """Return the next queued item, reading the socket or waiting as needed.

        The caller is the thread marked ``_receiving``.
        """
        while True:
            with self._lock:
                messages = self._messages
                while messages:
                    # No need to wake the background thread if reading may
                    # resume: this thread reads once the queue is empty.
                    item, _ = messages.pop()
                    if self._discarding:
                        if item.__class__ is Fragment:
                            self._discarding = not item.fin
                            continue
                        self._discarding = False
                    return item
                if self._pending_error is not None:
                    # The messages before the error were read: fail now.
                    self._fail_now()
                if not self.protocol._reading:
                    error = self._closed_error()
                    self._notify()
                    raise error
                if self._reader is None and self._write_pending() > self.write_limit:
                    # The peer sends control frames faster than it reads their
                    # answers: let the socket take them before reading more.
                    self._waker.wake()
                    wait = READ_LEASE
                    if deadline is not None:
                        wait = min(wait, deadline - time.monotonic())
                        if wait <= 0:
                            raise TimeoutError
                    self._wait(wait)
                    continue
                if self._reader is None:
                    self._reader = _APP
                else:
                    if self._reader is _BACKGROUND:
                        # Ask it to hand the socket over after this read.
                        self._waker.wake()
                    timeout = None
                    if deadline is not None:
                        timeout = deadline - time.monotonic()
                        if timeout <= 0:
                            raise TimeoutError
                    self._wait(timeout)
                    continue
            try:
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                self._read(timeout)
            finally:
                with self._lock:
                    if self._reader is _APP:
                        self._reader = None
                        self._notify()

    def _read(self, timeout: float | None) -> None:
        """Read once from the socket and act on what came; the caller holds the reading role.

        Raises:
            TimeoutError: If nothing arrived within ``timeout`` seconds.
        """
        protocol = self.protocol
        buffer = protocol.get_buffer()
        error: OSError | None = None
        try:
            count = self.transport.recv_into(buffer, timeout)
        except TimeoutError:
            raise
        except OSError as exc:
            count = 0
            error = exc
        with self._lock:
            if count:
                events = protocol.buffer_updated(count)
                if events:
                    self._dispatch(events)
            else:
                self._connection_lost(error)
            flush = bool(self._outq) or self.transport.has_output()
        if flush:
            self._flush_nowait()

    def _feed(self, data: bytes) -> None:
        """Act on bytes that came with the opening handshake, before any thread runs."""
        with self._lock:
            events = self.protocol.receive_data(data)
            if events:
                self._dispatch(events)

    def _dispatch(self, events: list[object]) -> None:
        """Act on received events (under the lock)."""
        put = self._messages.put
        for event in events:
            cls = event.__class__
            if cls is str or cls is bytes or cls is Fragment:
                put(event)  # type: ignore[arg-type]
            elif cls is Pong:
                self._on_pong(cast(Pong, event))
            elif cls is Close:
                self._closing_handshake_done()
            elif isinstance(event, ProtocolError):
                self._on_protocol_error(event, len(events) == 1)
            # Ping: the protocol queued the Pong already.
        protocol = self.protocol
        if protocol._out:
            self._queue(protocol.data_to_send())
        self._notify()

    def _queue(self, frames: list[bytes]) -> None:
        """Queue frames to write (under the lock)."""
        self._outq += frames
        for frame in frames:
            self._outq_size += len(frame)

    def _write_pending(self) -> int:
        """Bytes of control frames waiting to be written (under the lock)."""
        return self._outq_size + self._unsent_size

    def _take_output(self) -> list[bytes]:
        """Take the queued frames, as the socket should receive them (under the lock)."""
        frames = self._outq
        self._outq = []
        self._outq_size = 0
        return self.transport.encode(frames)

    def _on_protocol_error(self, exc: ProtocolError, alone: bool) -> None:
        self.logger.info(
            "%s: peer broke the protocol: %s; failing with close code %d",
            self._peer_name(),
            exc,
            exc.code,
        )
        self._pending_error = exc
        if alone and not self._messages:
            # No message arrived before the error: nothing to let the
            # application read first.
            self._fail_now()
        elif self.close_timeout is not None:
            # Let the application read the messages that arrived before the
            # error (and answer them) before the Close frame goes out -- what
            # Autobahn calls strict behaviour -- but not forever.
            self._error_deadline = time.monotonic() + self.close_timeout
            self._waker.wake()

    def _fail_now(self) -> None:
        exc = self._pending_error
        if exc is None:
            return
        self._pending_error = None
        self._error_deadline = None
        self._fail(exc.code, str(exc))

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 7.1.7): Close frame, then close TCP (under the lock)."""
        protocol = self.protocol
        if protocol.state is CLOSED and protocol.close_sent is not None:
            return
        self._queue(protocol.fail(code, reason))
        self._notify()
        self._closing_handshake_done()

    def _closing_handshake_done(self) -> None:
        """Close TCP once the protocol reached CLOSED; else arm the close timer (under the lock)."""
        if self.protocol.state is CLOSED and self.protocol.side is SERVER:
            # RFC 6455 7.1.1: the server closes the TCP connection first.
            self._close_tcp = True
        # The client waits for the server to close TCP, and either side for the
        # peer's Close frame, but not forever.
        if self.close_timeout is not None:
            self._close_deadline = time.monotonic() + self.close_timeout
        self._waker.wake()

    def _connection_lost(self, exc: BaseException | None) -> None:
        """The TCP connection is over: wake everyone (under the lock)."""
        if self._lost:
            return
        self._lost = True
        self._lost_exc = exc
        protocol = self.protocol
        if not protocol.eof_rcvd:
            protocol.receive_eof()
        self._pending_error = None
        self._error_deadline = None
        self._close_tcp = False
        self._close_deadline = None
        self._keepalive_at = None
        self._keepalive_deadline = None
        self._keepalive_ping = None
        for event, _, ack_on_close in self._pings.values():
            if ack_on_close:
                event.set()
        self._pings.clear()
        self._outq = []
        self._outq_size = 0
        self._notify()
        self._waker.wake()

    def _abort(self) -> None:
        """Close TCP now, whatever is in flight (under the lock)."""
        self.transport.shutdown()
        self._connection_lost(None)

    def _closed_error(self) -> ConnectionClosed:
        error = self.protocol.closed_error()
        if self._lost_exc is not None:
            error.__cause__ = self._lost_exc
        return error

    # Sending.

    def send(
        self,
        message: Sendable | Iterable[Sendable],
        text: bool | None = None,
    ) -> None:
        """Send a message; return once the kernel took all of it.

        Args:
            message: ``str`` sends a text message; ``bytes``, ``bytearray`` or
                ``memoryview`` a binary one. An iterable of ``str`` or of
                bytes-like objects sends one fragmented message, a frame per
                item, each as soon as the iterable produces it.
            text: ``True`` sends bytes (which must be UTF-8) as a text message,
                ``False`` sends a ``str`` as a binary message; ``None`` goes by
                the type.

        Raises:
            ConnectionClosed: If the connection is closing or closed.
            TypeError: If ``message`` has an unsupported type.
        """
        cls = message.__class__
        protocol = self.protocol
        if cls is str or cls is bytes or cls is bytearray or cls is memoryview:
            pass
        elif isinstance(message, (str, bytes, bytearray, memoryview)):
            cls = str if isinstance(message, str) else bytes
        elif isinstance(message, Mapping):
            raise TypeError("message must be str, bytes or an iterable of them, not a mapping")
        elif isinstance(message, Iterable):
            self._send_fragments(message, text)
            return
        else:
            raise TypeError(f"message has an unsupported type: {cls.__name__}")
        if cls is str:
            if text is False:
                payload: Any = cast(str, message).encode()
                encode: Callable[[Any], list[bytes]] = protocol.send_binary
            else:
                payload = message
                encode = protocol.send_text
        else:
            payload = message
            encode = protocol.send_text if text else protocol.send_binary
        # Whole messages go out one at a time: wait while another thread sends
        # a fragmented one. The write lock alone suffices when none is.
        write_lock = self._write_lock
        write_lock.acquire()
        try:
            with self._lock:
                if protocol._sending or self._lost:
                    fragmented = True
                else:
                    fragmented = False
                    frames = encode(payload)
                    if self._outq:
                        frames = self._outq + frames
                        self._outq = []
                        self._outq_size = 0
                    elif self._plain and len(frames) == 1 and not self._unsent:
                        # The common case: one frame, nothing before it.
                        frame = frames[0]
                        frames = None  # type: ignore[assignment]
                    if frames is not None:
                        data = self.transport.encode(frames)
        except BaseException:
            write_lock.release()
            raise
        if not fragmented:
            if frames is None:
                try:
                    self.socket.sendall(frame)
                except OSError as exc:
                    write_lock.release()
                    self._write_failed(exc)
                else:
                    with self._lock:
                        if not self._outq:
                            write_lock.release()
                            return
                        # Pongs or a Close reply came meanwhile: write them too.
                        data = self._take_output()
            self._write_and_release(data)
            return
        write_lock.release()
        with self._send_lock:
            self._send_frames(encode, payload)

    def _send_frames(self, encode: Callable[..., list[bytes]], *args: Any) -> None:
        """Produce frames with ``encode(*args)`` and write them, after what is queued."""
        self._write_lock.acquire()
        try:
            with self._lock:
                if self._lost:
                    raise self._closed_error()
                frames = encode(*args)
                if self._outq:
                    frames = self._outq + frames
                    self._outq = []
                    self._outq_size = 0
                data = self.transport.encode(frames)
        except BaseException:
            self._write_lock.release()
            raise
        self._write_and_release(data)

    def _write_and_release(self, data: list[Any]) -> None:
        """Write ``data``, then whatever was queued meanwhile; release the write lock.

        The caller holds the write lock.
        """
        transport = self.transport
        held = True
        try:
            while True:
                if self._unsent:
                    data = self._unsent + data
                    self._unsent = []
                    self._unsent_size = 0
                if data:
                    transport.send(data)
                with self._lock:
                    if not self._outq and not transport.has_output():
                        self._write_lock.release()
                        held = False
                        return
                    data = self._take_output()
        except OSError as exc:
            if held:
                held = False
                self._write_lock.release()
            self._write_failed(exc)
        finally:
            if held:
                self._write_lock.release()

    def _write_failed(self, exc: OSError) -> NoReturn:
        """The socket failed while writing: the connection is lost; raise."""
        with self._lock:
            self._lost_exc = self._lost_exc or exc
            self._abort()
            error = self._closed_error()
        raise error from exc

    def _flush(self) -> None:
        """Write the queued frames, blocking as long as needed."""
        self._write_lock.acquire()
        with self._lock:
            data = self._take_output() if self._outq or self.transport.has_output() else []
        self._write_and_release(data)

    def _flush_nowait(self) -> None:
        """Write the queued frames as far as the socket takes them without blocking.

        Does nothing while another thread holds the write lock: that thread
        writes them. What the socket does not take waits in ``_unsent``, and
        the background thread writes it once the socket takes more.
        """
        if not self._write_lock.acquire(blocking=False):
            return
        transport = self.transport
        try:
            while True:
                with self._lock:
                    if self._lost:
                        self._unsent = []
                        self._unsent_size = 0
                        return
                    data = self._unsent
                    self._unsent = []
                    self._unsent_size = 0
                    if self._outq or transport.has_output():
                        data += self._take_output()
                    if not data:
                        return
                rest = transport.send_nowait(data)
                if rest:
                    with self._lock:
                        self._unsent = rest
                        self._unsent_size = sum(len(piece) for piece in rest)
                    if threading.current_thread() is not self._thread:
                        self._waker.wake()  # to wait until the socket takes more
                    return
        except OSError as exc:
            with self._lock:
                self._lost_exc = self._lost_exc or exc
                self._abort()
        finally:
            self._write_lock.release()

    def _send_fragments(self, message: Iterable[Sendable], text: bool | None) -> None:
        # Each item goes out as soon as it is produced, in a frame with FIN
        # clear; an empty continuation frame with FIN set ends the message.
        protocol = self.protocol
        with self._send_lock:
            try:
                kind: type | None = None
                for item in message:
                    if isinstance(item, str):
                        item_kind: type = str
                    elif isinstance(item, (bytes, bytearray, memoryview)):
                        item_kind = bytes
                    else:
                        raise TypeError(
                            f"fragments must be str or bytes-like, not {type(item).__name__}"
                        )
                    if kind is None:
                        kind = item_kind
                        as_text = kind is str if text is None else text
                        data: Any = item
                        if kind is str and not as_text:
                            data = cast(str, item).encode()
                        encode = protocol.send_text if as_text else protocol.send_binary
                        self._send_frames(encode, data, False)
                    elif item_kind is not kind:
                        raise TypeError("fragments must all be str or all be bytes-like")
                    else:
                        self._send_frames(protocol.send_continuation, item, False)
                if kind is not None:
                    self._send_frames(protocol.send_continuation, b"", True)
            except BaseException:
                with self._lock:
                    failed = bool(protocol._sending) and protocol.state is OPEN
                    if failed:
                        # RFC 6455 5.4: a fragmented message cannot be abandoned
                        # halfway, so the connection is unusable.
                        self._fail(1011, "error while sending a fragmented message")
                if failed:
                    self._flush_nowait()
                raise

    # Control frames.

    def ping(
        self,
        data: Sendable | None = None,
        *,
        ack_on_close: bool = False,
    ) -> threading.Event:
        """Send a Ping.

        Args:
            data: The ping's payload (``str`` is UTF-8 encoded); 4 random bytes
                when ``None``.
            ack_on_close: Also set the event when the connection closes, so that
                waiting on it never hangs; then check that :attr:`state` is
                still ``OPEN`` to know that the Pong came.

        Returns:
            An event set when the matching Pong arrives.

        Raises:
            ConnectionClosed: If the connection is closing or closed.
            ConcurrencyError: If a ping with the same data awaits its pong.
        """
        payload = None if data is None else _control_payload(data)
        with self._lock:
            if payload is None:
                payload = os.urandom(4)
                while payload in self._pings:
                    payload = os.urandom(4)  # pragma: no cover - 1 in 4 billion
            elif payload in self._pings:
                raise ConcurrencyError("a ping with the same data awaits its pong")
            frames = self.protocol.send_ping(payload)
            event = threading.Event()
            self._pings[payload] = (event, time.monotonic(), ack_on_close)
            self._queue(frames)
            self._waker.wake()  # the Pong must be read even if recv() is not called
        self._flush()
        return event

    def pong(self, data: Sendable = b"") -> None:
        """Send an unsolicited Pong (a one-way heartbeat).

        Raises:
            ConnectionClosed: If the connection is closing or closed.
        """
        payload = _control_payload(data)
        with self._lock:
            self._queue(self.protocol.send_pong(payload))
        self._flush()

    def _on_pong(self, pong: Pong) -> None:
        now = time.monotonic()
        for payload in pong.acknowledged:
            entry = self._pings.pop(payload, None)
            if entry is None:
                continue
            event, sent, _ = entry
            event.set()
            if payload == pong.data:
                self.latency = now - sent
            if payload == self._keepalive_ping:
                self._keepalive_ping = None
                self._keepalive_deadline = None
                if self.ping_interval is not None:
                    self._keepalive_at = sent + self.ping_interval
                    self._waker.wake()  # the background thread sends it

    # Closing.

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Perform the closing handshake and wait for the TCP connection to close.

        Waits at most ``close_timeout`` for the peer's Close frame, then for the
        TCP connection to close. Calling it on a closed connection does nothing.

        Args:
            code: The close code (RFC 6455 section 7.4).
            reason: The close reason, at most 123 bytes once UTF-8 encoded.
        """
        with self._lock:
            self._initiate_close(code, reason)
        with contextlib.suppress(ConnectionClosed):  # closed already: that was the goal
            self._flush()
        self.wait_closed()

    def _initiate_close(self, code: int, reason: str) -> None:
        """Send a Close frame, or fail if a fragmented message is half sent (under the lock)."""
        protocol = self.protocol
        if protocol.state is OPEN and not self._lost:
            if protocol._sending:
                # A fragmented message was interrupted: the peer cannot make
                # sense of what follows, so fail rather than close.
                self._fail(1011, "close() interrupted a fragmented message")
            else:
                self._queue(protocol.send_close(code, reason))
                self._closing_handshake_done()
        elif protocol.state is CONNECTING:
            self._abort()

    def _start_close(self, code: int, reason: str) -> None:
        """Start the closing handshake without waiting (for a server shutting down)."""
        with self._lock:
            self._initiate_close(code, reason)
        self._flush_nowait()

    def wait_closed(self, timeout: float | None = None) -> bool:
        """Wait until the TCP connection is closed.

        Args:
            timeout: Seconds to wait at most; ``None``: as long as it takes.

        Returns:
            Whether it is closed.
        """
        thread = self._thread
        if thread is None:
            return self._closed.is_set()
        if not self._closed.wait(timeout):
            return False
        if thread is not threading.current_thread():
            thread.join()
        return True

    def _discard(self) -> None:
        """Release the socket of a connection whose opening handshake failed."""
        self.transport.shutdown()
        self.transport.close()
        self._waker.close()
        self._closed.set()

    # The background thread.

    def _start(self) -> None:
        """Start the background thread, once the opening handshake succeeded."""
        if self.ping_interval is not None:
            self._keepalive_at = time.monotonic() + self.ping_interval
        side = "server" if self.protocol.side is SERVER else "client"
        self._thread = threading.Thread(
            target=self._run, name=f"portside-{side}-{self._peer_name()}", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        """Read when the application does not, run the timers, and close the socket in the end."""
        poller = select.poll()
        fd = self.transport.fileno()
        poller.register(self._waker.fd, select.POLLIN)
        registered = 0  # the events the socket is registered for
        seen_calls = -1  # recv() calls seen on the last turn
        was_receiving = False  # whether the application was in recv() then
        lease_end = 0.0
        try:
            while True:
                with self._lock:
                    if self._lost:
                        break
                    now = time.monotonic()
                    self._run_timers(now)
                    if self._lost:
                        break
                    timeout = self._next_timer(now)
                    # The socket is the application's while it calls recv(),
                    # and for READ_LEASE seconds after.
                    calls = self._recv_calls
                    receiving = self._receiving
                    deep = False
                    if receiving:
                        if was_receiving and calls == seen_calls:
                            deep = True  # still the recv() of the last turn
                        else:
                            lease_end = now + READ_LEASE
                    elif was_receiving or calls != seen_calls:
                        lease_end = now + READ_LEASE
                    seen_calls = calls
                    was_receiving = receiving
                    read = False
                    if receiving:
                        if deep:
                            # Sleep until that recv() returns (it wakes this
                            # thread) rather than every READ_LEASE.
                            self._deep_sleep = True
                        else:
                            timeout = _earliest(timeout, lease_end - now)
                    elif self._reader is None and self._may_read():
                        if now >= lease_end or self._must_read():
                            read = True
                            self._reader = _BACKGROUND
                        else:
                            timeout = _earliest(timeout, lease_end - now)
                    elif self._write_pending() > self.write_limit or self._close_tcp:
                        timeout = _earliest(timeout, READ_LEASE)
                    if self._close_tcp:
                        timeout = _earliest(timeout, READ_LEASE)
                    flush = bool(self._outq)
                if flush:
                    # A keepalive Ping or a Close frame from the timers.
                    self._flush_nowait()
                write = bool(self._unsent)
                events = (_POLLIN if read else 0) | (_POLLOUT if write else 0)
                if events != registered:
                    if not registered:
                        poller.register(fd, events)
                    elif events:
                        poller.modify(fd, events)
                    else:
                        poller.unregister(fd)
                    registered = events
                if read and self.transport.buffered():
                    ready: list[tuple[int, int]] = [(fd, select.POLLIN)]
                else:
                    millis = None if timeout is None else max(0, int(timeout * 1000 + 0.999))
                    ready = poller.poll(millis)
                readable = writable = False
                for ready_fd, ready_events in ready:
                    if ready_fd == fd:
                        readable = bool(ready_events & _POLLIN)
                        writable = bool(ready_events & (_POLLOUT | select.POLLERR | select.POLLHUP))
                    else:
                        self._waker.drain()
                if read:
                    try:
                        if readable:
                            self._read(0.0)
                    except TimeoutError:
                        pass  # a TLS record is not complete yet
                    finally:
                        with self._lock:
                            if self._reader is _BACKGROUND:
                                self._reader = None
                                self._notify()
                if writable or self._outq:
                    self._flush_nowait()
                if self._close_tcp:
                    self._close_transport()
        except Exception as exc:  # pragma: no cover - a bug
            self.logger.error("unexpected error in the connection's thread", exc_info=True)
            with self._lock:
                self._lost_exc = self._lost_exc or exc
                self._abort()
        finally:
            self._finish()

    def _may_read(self) -> bool:
        """Whether the background thread may read at all (under the lock)."""
        if self._messages.paused and self.protocol._reading:
            return False  # back-pressure: the application must read first
        # Control frames the socket does not take are written first.
        return self._write_pending() <= self.write_limit

    def _must_read(self) -> bool:
        """Whether the background thread should read now, lease or not (under the lock)."""
        # After a Close frame, or while a Pong is awaited, reading cannot wait.
        return self.protocol.state is not OPEN or bool(self._pings)

    def _run_timers(self, now: float) -> None:
        """Act on the deadlines that passed (under the lock)."""
        if self._close_deadline is not None and now >= self._close_deadline:
            # The peer did not complete the closing handshake, or did not read
            # the last frames, in time.
            self._close_deadline = None
            self._abort()
            return
        if self._error_deadline is not None and now >= self._error_deadline:
            self._fail_now()
        if self._keepalive_ping is not None:
            deadline = self._keepalive_deadline
            if deadline is not None and now >= deadline:
                self._keepalive_deadline = None
                if self.protocol.state is OPEN:
                    self.logger.info("%s: no pong to keepalive ping; closing", self._peer_name())
                    self._fail(1011, "keepalive ping timeout")
        elif self._keepalive_at is not None and now >= self._keepalive_at:
            self._keepalive_at = None
            if self.protocol.state is OPEN:
                payload = os.urandom(4)
                while payload in self._pings:
                    payload = os.urandom(4)  # pragma: no cover - 1 in 4 billion
                self._queue(self.protocol.send_ping(payload))
                self._pings[payload] = (threading.Event(), now, False)
                self._keepalive_ping = payload
                if self.ping_timeout is not None:
                    self._keepalive_deadline = now + self.ping_timeout

    def _next_timer(self, now: float) -> float | None:
        """Seconds until the next deadline, or ``None`` (under the lock)."""
        earliest: float | None = None
        for deadline in (
            self._close_deadline,
            self._error_deadline,
            self._keepalive_deadline if self._keepalive_ping is not None else self._keepalive_at,
        ):
            if deadline is not None and (earliest is None or deadline < earliest):
                earliest = deadline
        return None if earliest is None else max(0.0, earliest - now)

    def _close_transport(self) -> None:
        """The server closes TCP once the closing handshake's frames are written."""
        if self._unsent or not self._write_lock.acquire(blocking=False):
            return  # not written yet: the next turn tries again
        try:
            with self._lock:
                if not self._close_tcp or self._lost:
                    return
                if self._outq:
                    return
                self.transport.close_output()
                data = self._take_output()
            if data:
                self.transport.send_nowait(data)  # TLS close_notify, if it fits
        except OSError:
            pass
        finally:
            self._write_lock.release()
        with self._lock:
            self._close_tcp = False
            self._abort()

    def _finish(self) -> None:
        """Close the socket once no thread uses it, and wake everyone."""
        transport = self.transport
        with self._lock:
            if not self._lost:  # pragma: no cover - only after a bug
                self._abort()
            # Blocked reads and writes return at once.
            transport.shutdown()
            while self._reader is not None and self._reader is not _DONE:
                self._wait(None)
            self._reader = _DONE
            self._messages.paused = False
        with self._write_lock:
            self._unsent = []
            self._unsent_size = 0
            transport.close()
        self._waker.close()
        self._closed.set()

    def _peer_name(self) -> str:
        return peer_name(self._extra.get("peername"))


def new_connection(
    factory: Callable[..., _C],
    transport: Transport,
    protocol: Protocol,
    *args: Any,
    options: ConnectionOptions,
    max_queue: int | tuple[int | None, int | None] | None,
) -> _C:
    """Create the connection of a server or a client with its validated options.

    Args:
        factory: The :class:`Connection` subclass (``create_connection``).
        transport: The connection's transport; closed if the factory fails.
        protocol: The sans-I/O protocol.
        *args: More positional arguments of ``factory`` (a server connection's server).
        options: The options, validated.
        max_queue: The ``max_queue`` option, which may be ``(high, low)`` here.
    """
    try:
        connection = factory(
            transport,
            protocol,
            *args,
            ping_interval=options.ping_interval,
            ping_timeout=options.ping_timeout,
            close_timeout=options.close_timeout,
            max_queue=max_queue,
        )
    except BaseException:
        transport.close()
        raise
    connection.write_limit = options.write_limit
    return connection


def _earliest(timeout: float | None, other: float) -> float:
    return other if timeout is None or other < timeout else timeout


def _join(fragments: list[Fragment]) -> Data:
    """The message that ``fragments`` make up."""
    if fragments[0].data.__class__ is str:
        return "".join(cast(str, fragment.data) for fragment in fragments)
    return b"".join(cast(bytes, fragment.data) for fragment in fragments)
