"""A WebSocket connection on asyncio: the object handlers and clients use.

:class:`Connection` is the :class:`asyncio.BufferedProtocol` of its transport and
drives a sans-I/O :class:`~portside.protocol.Protocol`. The kernel reads straight
into a receive buffer shared by the connections of the event loop
(:class:`~portside.protocol.Arena`); messages go to the coroutine waiting in
:meth:`recv`, or to a bounded queue when none is waiting.

Flow control, all per connection:

- ``max_size``: the largest message; a larger one fails the connection (1009).
- ``max_queue``: messages received and not yet read by the application. Past it,
  the connection stops reading the socket and TCP pushes back on the peer;
  reading resumes once the application drained the queue to a quarter.
- ``read_limit``: the most bytes taken from the socket in one read (plus room
  for a frame header), so the bytes held besides queued messages are one read
  plus one partial frame.
- ``write_limit``: bytes buffered by the transport above which :meth:`send`
  waits for the buffer to drain (to a quarter of the limit).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import sys
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, Union, cast
from weakref import WeakKeyDictionary

from ..exceptions import (
    ConcurrencyError,
    ConnectionClosedOK,
    ProtocolError,
)
from ..protocol.close import Close
from ..protocol.connection import SERVER, Protocol
from ..protocol.events import Pong
from ..protocol.headers import Headers
from ..protocol.reader import Arena
from ..protocol.state import CLOSED, CONNECTING, OPEN, State
from ..typing import Data
from .speedups import IMPLEMENTATION, ConnectionBase

if TYPE_CHECKING:  # pragma: no cover
    from ..protocol.http11 import Request, Response

__all__ = ["Connection", "Data", "arena_for"]

BytesLike = Union[bytes, bytearray, memoryview]
Sendable = Union[str, BytesLike]
"""What :meth:`Connection.send` takes, alone or as the fragments of an iterable."""
Fragments = Union[Iterable[Sendable], AsyncIterable[Sendable]]

_arenas: WeakKeyDictionary[asyncio.AbstractEventLoop, Arena] = WeakKeyDictionary()

# CPython gh-127655: on Python 3.12.0 to 3.12.8 and 3.13.0 to 3.13.1, what the
# selector loop's socket transport cannot send at once in writelines() goes to
# its buffer without _maybe_pause_protocol(): pause_writing() never comes, and
# a peer that stops reading would make the buffer grow past write_limit without
# bound. Fixed in 3.12.9 and 3.13.2. Connection._writelines() makes up for it on
# the transports of this class (None on other releases).
_WRITELINES_DOES_NOT_PAUSE: type | None = None
if (3, 12) <= sys.version_info < (3, 12, 9) or (3, 13) <= sys.version_info < (3, 13, 2):
    _WRITELINES_DOES_NOT_PAUSE = asyncio.selector_events._SelectorSocketTransport  # type: ignore[attr-defined]


def arena_for(loop: asyncio.AbstractEventLoop) -> Arena:
    """Return the receive buffer that the connections of ``loop`` share.

    Each connection's protocol grows it to what its ``read_limit`` needs.
    """
    arena = _arenas.get(loop)
    if arena is None:
        arena = _arenas[loop] = Arena(0)
    return arena


class Connection(ConnectionBase, asyncio.BufferedProtocol):
    """A WebSocket connection, either side: the ``ws`` object of the API.

    Not created directly: :func:`~portside.serve` hands one to each handler and
    :func:`~portside.connect` returns one.

    Iterating with ``async for`` yields messages until the connection closes
    normally; a closure with an error raises :class:`ConnectionClosedError`.

    ``messages_received`` and ``messages_sent`` count data messages;
    ``bytes_received`` and ``bytes_sent`` count bytes on the wire after the
    opening handshake (frames, control frames included), for access logs and
    metrics.
    """

    protocol: Protocol
    request: Request | None
    """The opening request (HTTP)."""
    broadcast_skips: int = 0
    """Messages :func:`~portside.asyncio.server.broadcast` skipped for this
    connection because its write buffer was above ``write_limit``."""
    _broadcast_streak: int = 0  # skipped in a row (SlowConsumerPolicy)
    response: Response | None
    """The answer to the opening request (HTTP)."""

    def __init__(
        self,
        protocol: Protocol,
        *,
        max_queue: int | None = 16,
        write_limit: int = 2**16,
        ping_interval: float | None = 20,
        ping_timeout: float | None = 20,
        close_timeout: float | None = 10,
        logger: logging.Logger | logging.LoggerAdapter[Any],
    ) -> None:
        self.protocol = protocol
        self.logger = logger
        self.max_queue = max_queue
        self.write_limit = write_limit
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.request = None
        self.response = None
        self.latency = 0.0
        """Round-trip time of the last keepalive ping, in seconds (0 before one)."""
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport = cast(asyncio.Transport, None)
        self._messages: collections.deque[Data] | None = None
        self._waiter: asyncio.Future[Data] | None = None
        self._reading_paused = False
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] | None = None
        self._fragmenting: asyncio.Future[None] | None = None
        self._pending_error: ProtocolError | None = None
        self._pings: dict[bytes, tuple[asyncio.Future[float], float]] = {}
        self._timer: asyncio.TimerHandle | None = None  # keepalive or close timeout
        self._keepalive_ping: bytes | None = None
        self._lost = False
        # One future per wait_closed() call, so that cancelling one caller
        # leaves the others waiting.
        self._lost_waiters: list[asyncio.Future[None]] = []
        self._id: uuid.UUID | None = None
        self._handshaking = False  # the opening handshake owns received bytes
        # Transports call get_buffer() before every read: skip a call level.
        self.get_buffer = protocol.get_buffer  # type: ignore[method-assign,assignment]

    # Properties.

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
    def open(self) -> bool:
        """Whether messages can be sent (``state`` is ``OPEN``)."""
        return self.protocol.state is OPEN

    @property
    def closed(self) -> bool:
        """Whether the TCP connection is closed."""
        return self._lost

    @property
    def local_address(self) -> Any:
        """The local socket address, as ``socket.getsockname()`` returns it."""
        return self.transport.get_extra_info("sockname")

    @property
    def remote_address(self) -> Any:
        """The peer's socket address, as ``socket.getpeername()`` returns it."""
        return self.transport.get_extra_info("peername")

    @property
    def subprotocol(self) -> str | None:
        """The negotiated subprotocol, or ``None``."""
        return cast(Union[str, None], getattr(self.protocol, "subprotocol", None))

    @property
    def path(self) -> str:
        """The path of the opening request, such as ``/chat?room=1``."""
        return self.request.path if self.request is not None else ""

    @property
    def request_headers(self) -> Headers:
        """The headers of the opening request."""
        return self.request.headers if self.request is not None else Headers()

    @property
    def response_headers(self) -> Headers:
        """The headers of the answer to the opening request."""
        return self.response.headers if self.response is not None else Headers()

    @property
    def close_code(self) -> int | None:
        """The close code received; ``None`` while the connection is open.

        1005 stands for a Close frame without a code, 1006 for no Close frame.
        """
        if not self._lost and self.protocol.state is not CLOSED:
            return None
        close = self.protocol.close_rcvd
        return 1006 if close is None else close.code

    @property
    def close_reason(self) -> str | None:
        """The close reason received; ``None`` while the connection is open."""
        if not self._lost and self.protocol.state is not CLOSED:
            return None
        close = self.protocol.close_rcvd
        return "" if close is None else close.reason

    # Receiving.

    async def recv(self, decode: bool | None = None, *, _iterating: bool = False) -> Data:
        """Return the next message: ``str`` for text, ``bytes`` for binary.

        Args:
            decode: ``None``: as received. ``True``: binary messages too come
                as ``str`` (decoded as UTF-8). ``False``: text messages too come
                as ``bytes`` (their UTF-8 encoding).

        Raises:
            ConnectionClosedOK: When the connection closed normally.
            ConnectionClosedError: When it closed with an error.
            ConcurrencyError: If another coroutine is already in :meth:`recv`.
            UnicodeDecodeError: With ``decode=True``, for a binary message that
                is not UTF-8 (the message is consumed).
        """
        messages = self._messages
        if messages:
            message = messages.popleft()
            if self._reading_paused and len(messages) <= self.max_queue >> 2:  # type: ignore[operator]
                self._reading_paused = False
                self.transport.resume_reading()
            return message if decode is None else _convert(message, decode)
        if self._waiter is not None:
            raise ConcurrencyError("another coroutine is already waiting for the next message")
        if self._pending_error is not None:
            self._fail_now()
        if not self.protocol._reading:
            error = self.protocol.closed_error()
            if _iterating and isinstance(error, ConnectionClosedOK):
                raise StopAsyncIteration
            raise error
        waiter: asyncio.Future[Data] = self.loop.create_future()
        self._waiter = waiter
        try:
            message = await waiter
        except ConnectionClosedOK:
            if _iterating:
                raise StopAsyncIteration from None
            raise
        except BaseException:
            # Cancelled (or closed) after the message came but before this
            # coroutine resumed: the message goes back for the next recv().
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._requeue(waiter.result())
            raise
        finally:
            if self._waiter is waiter:
                self._waiter = None
            # The future holds the exception raised here, whose traceback holds
            # this frame: without the local, no cycle keeps the connection.
            del waiter
        return message if decode is None else _convert(message, decode)

    async def recv_streaming(self, decode: bool | None = None) -> AsyncIterator[Data]:
        """Receive the next message as an asynchronous iterator of its parts.

        portside assembles each message as its frames arrive (``max_size``
        bounds it), so the iterator yields the whole message once: code that
        joins the parts, as websockets' documentation shows, gets the message.

        Args:
            decode: As for :meth:`recv`.

        Raises:
            ConnectionClosed, ConcurrencyError: As :meth:`recv`.
        """
        yield await self.recv(decode)

    def __aiter__(self) -> AsyncIterator[Data]:
        return self

    if TYPE_CHECKING:  # pragma: no cover - ConnectionBase's, C or Python

        def __anext__(self) -> Coroutine[Any, Any, Data]: ...

    # asyncio.BufferedProtocol

    # buffer_updated() comes from ConnectionBase (C or pure Python): it gives
    # messages to the waiting coroutine and calls the methods below for the rest.

    def _receive_handshake(self, nbytes: int) -> None:
        raise NotImplementedError  # pragma: no cover

    def _feed(self, data: bytes) -> None:
        """Process bytes received during the handshake that belong to frames."""
        view = memoryview(data)
        while view and not self._lost:
            buffer = self.protocol.get_buffer(-1)
            size = min(len(buffer), len(view))
            buffer[:size] = view[:size]
            view = view[size:]
            self.buffer_updated(size)

    def _enqueue(self, message: Data) -> None:
        messages = self._messages
        if messages is None:
            messages = self._messages = collections.deque()
        messages.append(message)
        if (
            self.max_queue is not None
            and len(messages) >= self.max_queue
            and not self._reading_paused
            and self.protocol._reading
        ):
            # Stop reading: TCP's flow control pushes back on the peer.
            self._reading_paused = True
            self.transport.pause_reading()

    def _requeue(self, message: Data) -> None:
        """Put back, first in line, a message that a cancelled recv() received."""
        self._enqueue(message)
        cast("collections.deque[Data]", self._messages).rotate(1)

    def _on_event(self, event: object, alone: bool) -> None:
        if isinstance(event, Pong):
            self._on_pong(event)
        elif isinstance(event, Close):
            self._on_close_frame()
        elif isinstance(event, ProtocolError):
            self._on_protocol_error(event, alone)
        # Ping: the protocol queued the Pong already.

    def _on_close_frame(self) -> None:
        self._write_all(self.protocol.data_to_send())
        self._wake_receiver()
        self._closing_handshake_done()

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
        else:
            # Let the application read the messages that arrived before the
            # error (and answer them) before the Close frame goes out -- what
            # Autobahn calls strict behaviour -- but not forever.
            self._set_timer(self.close_timeout, self._fail_now)

    def _fail_now(self) -> None:
        exc = self._pending_error
        if exc is None:
            return
        self._pending_error = None
        self._fail(exc.code, str(exc))

    def _fail(self, code: int, reason: str) -> None:
        """Fail the connection (RFC 6455 7.1.7): Close frame, then close TCP."""
        protocol = self.protocol
        if protocol.state is CLOSED and protocol.close_sent is not None:
            return
        if len(reason.encode()) > 123:
            reason = reason.encode()[:120].decode(errors="ignore") + "..."
        self._write_all(protocol.fail(code, reason))
        self._wake_receiver()
        self._closing_handshake_done()

    def _wake_receiver(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_exception(self.protocol.closed_error())

    def _closing_handshake_done(self) -> None:
        """Close TCP once the protocol reached CLOSED; else arm the close timer."""
        if self.protocol.state is CLOSED:
            if self.protocol.side is SERVER:
                # RFC 6455 7.1.1: the server closes the TCP connection first.
                self._close_transport()
            else:
                # The client waits for the server to close, but not forever.
                self._set_timer(self.close_timeout, self._close_transport)
        else:
            self._set_timer(self.close_timeout, self._abort)

    def _close_transport(self) -> None:
        transport = self.transport
        transport.close()
        if transport.get_write_buffer_size() or transport.get_extra_info("sslcontext"):
            # The peer could stall the close: data is left to flush, or TLS
            # waits for its close_notify.
            self._set_timer(self.close_timeout, self._abort)
        else:
            # Nothing to wait for: connection_lost() follows at once.
            self._set_timer(None, None)

    def _abort(self) -> None:
        if not self._lost:
            self.transport.abort()

    def _set_timer(self, delay: float | None, callback: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if delay is not None and not self._lost:
            self._timer = self.loop.call_later(delay, callback)

    def eof_received(self) -> bool:  # noqa: D102
        return False  # close the transport

    def connection_lost(self, exc: BaseException | None) -> None:  # noqa: D102
        self._lost = True
        self._unhook_transport()
        if not self.transport.is_closing():
            # Python 3.10's TLS transport warns that it was never closed (a
            # ResourceWarning when collected) unless close() is called, even
            # after the connection is lost, as when the peer closes first; 3.11
            # marks it closed itself. Other transports are closing by now.
            self.transport.close()
        protocol = self.protocol
        if not protocol.eof_rcvd:
            protocol.receive_eof()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending_error = None
        self._wake_receiver()
        if self._pings or self._drain_waiters:
            error = self.protocol.closed_error()
            for future, _ in self._pings.values():
                if not future.done():
                    future.set_exception(error)
            self._pings.clear()
            self._wake_writers(error)
        self._write_paused = False
        for waiter in self._lost_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._lost_waiters.clear()

    # Sending.

    async def send(
        self,
        message: Sendable | Iterable[Sendable] | AsyncIterable[Sendable],
        *,
        text: bool | None = None,
    ) -> None:
        """Send a message.

        Args:
            message: ``str`` sends a text message; ``bytes``, ``bytearray`` or
                ``memoryview`` a binary one. An iterable or async iterable of
                ``str`` or of bytes-like objects sends one fragmented message,
                a frame per item.
            text: ``True`` sends bytes-like data (UTF-8, unchecked) as a text
                message; ``False`` sends a ``str`` as a binary message (its
                UTF-8 encoding); ``None``: by the type of ``message``.

        Raises:
            ConnectionClosed: If the connection is closing or closed.
            TypeError: If ``message`` has an unsupported type.
        """
        if text is not None:
            await self._send_as(message, text)
            return
        if self._fragmenting is not None:
            await self._wait_fragmented()
        cls = message.__class__
        protocol = self.protocol
        if cls is str:
            frames = protocol.send_text(message)  # type: ignore[arg-type]
        elif cls is bytes or cls is bytearray or cls is memoryview:
            frames = protocol.send_binary(message)  # type: ignore[arg-type]
        elif isinstance(message, str):
            frames = protocol.send_text(message)
        elif isinstance(message, (bytes, bytearray, memoryview)):
            frames = protocol.send_binary(message)
        elif isinstance(message, dict):
            raise TypeError("message must be str, bytes or an iterable of them, not dict")
        elif isinstance(message, (Iterable, AsyncIterable)):
            await self._send_fragments(cast(Fragments, message))
            return
        else:
            raise TypeError(f"message has an unsupported type: {cls.__name__}")
        if len(frames) == 1:
            self.transport.write(frames[0])
            self.bytes_sent += len(frames[0])
        else:
            self._write_all(frames)  # counts the bytes
        self.messages_sent += 1
        if self._write_paused:
            await self._drain()

    async def _send_as(
        self, message: Sendable | Iterable[Sendable] | AsyncIterable[Sendable], text: bool
    ) -> None:
        """``send(message, text=...)``: the frame type said, not guessed."""
        if self._fragmenting is not None:
            await self._wait_fragmented()
        protocol = self.protocol
        if isinstance(message, (str, bytes, bytearray, memoryview)):
            if text:
                frames = protocol.send_text(message)
            else:
                data = message.encode() if isinstance(message, str) else message
                frames = protocol.send_binary(data)
            self._write_all(frames)
            self.messages_sent += 1
            if self._write_paused:
                await self._drain()
            return
        if isinstance(message, dict):
            raise TypeError("message must be str, bytes or an iterable of them, not dict")
        if not isinstance(message, (Iterable, AsyncIterable)):
            raise TypeError(f"message has an unsupported type: {type(message).__name__}")
        await self._send_fragments(_retyped(cast(Fragments, message), text), text)

    async def _wait_fragmented(self) -> None:
        while self._fragmenting is not None:
            await asyncio.shield(self._fragmenting)

    async def _send_fragments(self, message: Fragments, text: bool | None = None) -> None:
        # Each item goes out as soon as it is produced, in a frame with FIN
        # clear; an empty continuation frame with FIN set ends the message.
        protocol = self.protocol
        done = self.loop.create_future()
        self._fragmenting = done
        try:
            if isinstance(message, AsyncIterable):
                async for item in message:
                    await self._send_fragment(item, text)
            else:
                for item in message:
                    await self._send_fragment(item, text)
            if protocol._sending:
                self._write_all(protocol.send_continuation(b"", fin=True))
                self.messages_sent += 1
        except BaseException:
            if protocol._sending and protocol.state is OPEN:
                # RFC 6455 5.4: a fragmented message cannot be abandoned halfway,
                # so the connection is unusable.
                self._fail(1011, "error while sending a fragmented message")
            raise
        finally:
            self._fragmenting = None
            done.set_result(None)

    async def _send_fragment(self, item: object, forced: bool | None = None) -> None:
        protocol = self.protocol
        if isinstance(item, str):
            text = True
        elif isinstance(item, (bytes, bytearray, memoryview)):
            # Bytes are text fragments when send(text=True) says so.
            text = forced is True
        else:
            raise TypeError(f"fragments must be str or bytes-like, not {type(item).__name__}")
        sending = protocol._sending
        if sending and (sending == 1) != text:
            raise TypeError("fragments must all be str or all be bytes-like")
        if sending:
            frames = protocol.send_continuation(item, fin=False)
        elif text:
            frames = protocol.send_text(item, fin=False)
        else:
            frames = protocol.send_binary(item, fin=False)  # type: ignore[arg-type]
        self._write_all(frames)
        if self._write_paused:
            await self._drain()

    def _write_all(self, frames: list[bytes]) -> None:
        if frames and not self._lost:
            self._writelines(frames)
            self.bytes_sent += sum(map(len, frames))

    def _writelines(self, frames: list[bytes]) -> None:
        # Every writelines() of a connection, the C accelerator's and
        # broadcast()'s too, is here: write() pauses the protocol as it should
        # on every release, writelines() not on all.
        transport = self.transport
        transport.writelines(frames)
        if (
            _WRITELINES_DOES_NOT_PAUSE is not None
            and isinstance(transport, _WRITELINES_DOES_NOT_PAUSE)
            and not self._write_paused
        ):
            # CPython gh-127655 (see above): check the buffer ourselves.
            # Setting the limits again makes the transport compare its buffer
            # with them and pause us, as writelines() should have; it then
            # resumes us as the buffer drains.
            limit = self.write_limit
            if transport.get_write_buffer_size() > limit:
                transport.set_write_buffer_limits(limit, limit // 4)

    def pause_writing(self) -> None:  # noqa: D102
        self._write_paused = True

    def resume_writing(self) -> None:  # noqa: D102
        self._write_paused = False
        self._wake_writers(None)

    def _wake_writers(self, error: BaseException | None) -> None:
        waiters = self._drain_waiters
        if waiters:
            self._drain_waiters = None
            for waiter in waiters:
                if not waiter.done():
                    if error is None:
                        waiter.set_result(None)
                    else:
                        waiter.set_exception(error)

    async def _drain(self) -> None:
        if self._lost:
            raise self.protocol.closed_error()
        waiter = self.loop.create_future()
        if self._drain_waiters is None:
            self._drain_waiters = []
        self._drain_waiters.append(waiter)
        await waiter

    if not TYPE_CHECKING and IMPLEMENTATION == "c":  # pragma: no cover - depends on the build
        # The C accelerator's recv() and send() handle the common cases without
        # a Python frame and call these for the rest; they behave the same.
        # Type checkers see the Python methods' signatures.
        _recv_in_python = recv
        _send_in_python = send
        recv = ConnectionBase.recv
        send = ConnectionBase.send

    # Control frames.

    async def ping(self, data: Data | None = None) -> Awaitable[float]:
        """Send a Ping.

        Args:
            data: The ping's payload; 4 random bytes when ``None``.

        Returns:
            A future that resolves to the round-trip time in seconds when the
            matching Pong arrives: ``latency = await (await ws.ping())``.

        Raises:
            ConnectionClosed: If the connection is closing or closed.
            ConcurrencyError: If a ping with the same data awaits its pong.
        """
        if data is None:
            payload = os.urandom(4)
            while payload in self._pings:
                payload = os.urandom(4)  # pragma: no cover - 1 in 4 billion
        else:
            payload = data.encode() if isinstance(data, str) else bytes(data)
        try:
            frames = self.protocol.send_ping(payload)
        except ValueError as exc:
            if payload in self._pings:
                raise ConcurrencyError(str(exc)) from None
            raise
        future: asyncio.Future[float] = self.loop.create_future()
        self._pings[payload] = (future, time.monotonic())
        self._write_all(frames)
        return future

    async def pong(self, data: Data = b"") -> None:
        """Send an unsolicited Pong (a one-way heartbeat).

        Raises:
            ConnectionClosed: If the connection is closing or closed.
        """
        payload = data.encode() if isinstance(data, str) else bytes(data)
        self._write_all(self.protocol.send_pong(payload))

    def _on_pong(self, pong: Pong) -> None:
        now = time.monotonic()
        for payload in pong.acknowledged:
            entry = self._pings.pop(payload, None)
            if entry is None:
                continue
            future, sent = entry
            if not future.done():
                future.set_result(now - sent)
            if payload == pong.data:
                self.latency = now - sent
            if payload == self._keepalive_ping:
                self._keepalive_ping = None
                self._schedule_keepalive(sent)

    def _start_keepalive(self) -> None:
        if self.ping_interval is not None:
            self._schedule_keepalive(time.monotonic())

    def _schedule_keepalive(self, last: float) -> None:
        if self.ping_interval is None or self._lost:
            return
        delay = max(0.0, last + self.ping_interval - time.monotonic())
        self._set_timer(delay, self._send_keepalive)

    def _send_keepalive(self) -> None:
        self._timer = None
        if self.protocol.state is not OPEN:
            return
        payload = os.urandom(4)
        while payload in self._pings:
            payload = os.urandom(4)  # pragma: no cover - 1 in 4 billion
        future: asyncio.Future[float] = self.loop.create_future()
        future.add_done_callback(_consume_exception)
        self._pings[payload] = (future, time.monotonic())
        self._keepalive_ping = payload
        self._write_all(self.protocol.send_ping(payload))
        if self.ping_timeout is not None:
            self._set_timer(self.ping_timeout, self._keepalive_timeout)

    def _keepalive_timeout(self) -> None:
        self._timer = None
        if self._keepalive_ping is not None and self.protocol.state is OPEN:
            self.logger.info("%s: no pong to keepalive ping; closing", self._peer_name())
            self._fail(1011, "keepalive ping timeout")

    # Closing.

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Perform the closing handshake and wait for the connection to close.

        Waits at most ``close_timeout`` for the peer's Close frame, then for the
        TCP connection to close. Calling it on a closed connection does nothing.

        Args:
            code: The close code (RFC 6455 section 7.4).
            reason: The close reason, at most 123 bytes once UTF-8 encoded.
        """
        self._start_close(code, reason)
        await self.wait_closed()

    def _start_close(self, code: int, reason: str) -> None:
        protocol = self.protocol
        if protocol.state is OPEN:
            if self._fragmenting is not None:
                # A fragmented message was interrupted: the peer cannot make
                # sense of what follows, so fail rather than close.
                self._fail(1011, "close() interrupted a fragmented message")
                return
            self._write_all(protocol.send_close(code, reason))
            self._closing_handshake_done()
        elif protocol.state is CONNECTING:
            self._abort()

    async def wait_closed(self) -> None:
        """Wait until the TCP connection is closed."""
        if self._lost:
            return
        waiter = self.loop.create_future()
        waiters = self._lost_waiters
        waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in waiters:  # cancelled before the connection was lost
                waiters.remove(waiter)

    def _peer_name(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport else None
        if isinstance(peer, tuple) and len(peer) >= 2:
            return f"{peer[0]}:{peer[1]}"
        return str(peer or "peer")


def _convert(message: Data, decode: bool) -> Data:
    """``recv(decode=...)``: text as bytes, or binary as text."""
    if decode:
        return message.decode() if isinstance(message, bytes) else message
    return message.encode() if isinstance(message, str) else message


def _retyped(message: Fragments, text: bool) -> Fragments:
    """The fragments of ``send(fragments, text=False)`` as bytes; others as they are."""
    if text:
        return message
    if isinstance(message, AsyncIterable):

        async def encoded() -> AsyncIterator[Sendable]:
            async for item in message:
                yield item.encode() if isinstance(item, str) else item

        return encoded()
    return (item.encode() if isinstance(item, str) else item for item in message)


def _consume_exception(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
