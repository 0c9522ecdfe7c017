"""The pub/sub hub: topics, subscriptions, local fan-out, gaps and their recovery.

One :class:`Hub` per process (per worker). Connections subscribe to topics;
:meth:`Hub.publish` hands a message to the backend, which numbers it and brings
it to the hub of every process with subscribers to its topic (the in-memory
backend: this process only; Redis: every worker of every host). Each hub then
sends it to its local subscribers, building the frame once.

On the way, each hub follows every topic's positions (:mod:`.sequence`). Missing
messages are recovered from the backend's history when the topic keeps one, or
told to the subscribers as a gap (:mod:`.envelope`, ``on_gap``). A subscriber
whose backlog is full is skipped, and told later how many messages it missed;
or closed with 1013, as configured. It never holds up the others.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import importlib.util
import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any, Literal, Union

from ..asyncio.connection import Connection
from ..protocol.options import logger_option
from ..protocol.state import OPEN
from .backends.base import Backend, History
from .backends.memory import MemoryBackend
from .envelope import Payload, TopicEnvelope, gap_frame, subscribed_frame
from .errors import BackendUnavailable, HubClosed, HubError
from .fanout import Flusher, flusher_for, writable
from .gap import Gap, GapReason
from .metrics import HubMetrics
from .sequence import DUPLICATE, NEXT, Missing, Position, Sequence

__all__ = ["Hub", "SlowConsumer"]

SlowConsumer = Literal["skip", "close"]
"""What the hub does with a subscriber whose backlog is full: ``skip`` the message
for it and count (the default), or ``close`` the connection with 1013."""

HistorySetting = Union[int, Callable[[str], int]]

MAX_TOPIC_LENGTH = 1024
# Messages buffered for a subscription that is catching up; past it, they are
# skipped for it (and counted, and told) as for a full backlog.
JOIN_BUFFER = 4096
# How often subscribers that were skipped are checked for room, to be told of
# their gap even when no new message comes.
LAG_SWEEP_INTERVAL = 0.5
# Before reading history again after the backend failed to answer.
RETRY_DELAY = 0.1

_RESYNC = object()  # a pending item that is a head position, not a message

# A frame waiting in a topic's outbox: its number in the order frames were made
# (over all topics), the frame, and what it stands for (a message's position, or
# the range a gap notice tells).
_Outgoing = tuple[int, Payload, Union[Position, None], Union[Missing, None], GapReason]


class _Lag:
    """What a subscriber missed and has not been told yet: ranges and their reasons."""

    __slots__ = ("ranges",)

    def __init__(self) -> None:
        self.ranges: list[tuple[Missing, GapReason]] = []

    def skip(self, position: Position) -> None:
        ranges = self.ranges
        if ranges:
            last, reason = ranges[-1]
            if (
                reason == "slow"
                and last.epoch == position.epoch
                and last.last == position.offset - 1
            ):
                ranges[-1] = (Missing(last.epoch, last.first, position.offset), reason)
                return
        ranges.append((Missing(position.epoch, position.offset, position.offset), "slow"))

    def add(self, missing: Missing, reason: GapReason) -> None:
        self.ranges.append((missing, reason))


class _Join:
    """A subscription catching up: what arrives meanwhile waits here, in order."""

    __slots__ = ("buffer", "buffering", "lag", "task")

    def __init__(self) -> None:
        # Set once the topic flows to this process: the subscription starts then.
        self.buffering = False
        self.buffer: collections.deque[tuple[Position | None, Missing | None, Any]] = (
            collections.deque()
        )
        self.lag = _Lag()
        self.task: asyncio.Task[None] | None = None


class _Topic:
    """A topic with subscribers in this process."""

    __slots__ = (
        "envelope",
        "joining",
        "lagging",
        "live",
        "name",
        "outbox",
        "pending",
        "ready",
        "recovering",
        "sequence",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.envelope = TopicEnvelope(name)
        self.sequence = Sequence()
        self.live: set[Connection] = set()
        self.lagging: dict[Connection, _Lag] = {}
        self.joining: dict[Connection, _Join] = {}
        # Frames for the live subscribers, written together at the end of the
        # event loop's iteration (or before, at a subscriber's write barrier):
        # one write per subscriber for a burst.
        self.outbox: list[_Outgoing] = []
        # A recovery from history is under way: what arrives meanwhile waits.
        self.recovering: asyncio.Task[None] | None = None
        self.pending: collections.deque[tuple[Position, Any]] = collections.deque()
        self.ready: asyncio.Task[None] | None = None  # the backend's subscription

    def __len__(self) -> int:
        return len(self.live) + len(self.lagging) + len(self.joining)


class Hub:
    """Publish messages to topics; deliver them to the connections subscribed to them.

    Args:
        backend: Where messages go between processes: a
            :class:`~portside.hub.MemoryBackend` (one process, the default) or a
            :class:`~portside.hub.RedisBackend` (many workers and hosts).
        envelope: ``"json"`` (the default): each frame is a JSON object with the
            topic and the message's position, and subscribers are told of gaps
            (``docs/hub.md`` gives the format). ``None``: subscribers get the
            published payload as it is, and nothing else.
        history: How many of its latest messages a topic keeps for recovery:
            an int for every topic, or a function of the topic's name. 0 (the
            default): none; missed messages are then only told, not recovered.
        slow_consumer: What to do when a subscriber's backlog is full (its
            connection's ``write_limit`` reached): ``"skip"`` the message for it,
            count it and tell it later (the default), or ``"close"`` the
            connection with 1013 (try again later).
        on_gap: Called with a :class:`~portside.hub.Gap` whenever subscribers
            are told that messages will not come.
        logger: A logger or its name; default ``portside.hub``.

    ``async with Hub(...) as hub:`` starts it and closes it; so do
    :meth:`start` and :meth:`close`. It also starts on first use.
    """

    # The event loop's (set when the hub starts): it runs the deferred writes,
    # and is the write barrier of the subscribers' connections.
    _flusher: Flusher

    def __init__(
        self,
        backend: Backend | None = None,
        *,
        envelope: Literal["json"] | None = "json",
        history: HistorySetting = 0,
        slow_consumer: SlowConsumer = "skip",
        on_gap: Callable[[Gap], Any] | None = None,
        logger: logging.Logger | logging.LoggerAdapter[Any] | str | None = None,
    ) -> None:
        if envelope not in ("json", None):
            raise ValueError(f'envelope must be "json" or None, not {envelope!r}')
        if slow_consumer not in ("skip", "close"):
            raise ValueError(f'slow_consumer must be "skip" or "close", not {slow_consumer!r}')
        if isinstance(history, bool) or not (
            callable(history) or (isinstance(history, int) and history >= 0)
        ):
            raise ValueError(f"history must be an int >= 0 or a function of the topic: {history!r}")
        if on_gap is not None and not callable(on_gap):
            raise TypeError("on_gap must be callable or None")
        if backend is None:
            backend = MemoryBackend()
        elif not isinstance(backend, Backend):
            raise TypeError(f"backend must be a portside.hub Backend, not {type(backend).__name__}")
        self.backend = backend
        self.envelope = envelope
        self.slow_consumer = slow_consumer
        self.on_gap = on_gap
        self.logger = logger_option(logger or None, "portside.hub")  # "" too: the default
        self.metrics = HubMetrics()
        self._history = history
        self._topics: dict[str, _Topic] = {}
        # Per connection: its topics, and the task that forgets it once closed.
        self._members: dict[Connection, tuple[set[str], asyncio.Task[None]]] = {}
        self._started: asyncio.Task[None] | None = None
        self._closed = False
        self._available: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._lag_sweep: asyncio.TimerHandle | None = None
        # Topics whose outbox holds frames, in the order they got the first.
        self._to_flush: list[_Topic] = []
        self._flush_scheduled = False
        self._made = 0  # frames made for outboxes: their order
        # Connections subscribed to several topics: their frames from several
        # outboxes are merged in the order they were made.
        self._multi: set[Connection] = set()

    # Lifecycle.

    async def start(self) -> None:
        """Connect the backend. Called on first use if not before."""
        await self._ensure_started()

    def _ensure_started(self) -> asyncio.Task[None]:
        if self._closed:
            raise HubClosed("the hub is closed")
        if self._started is None:
            self._available = asyncio.Event()
            loop = asyncio.get_running_loop()
            self._flusher = flusher_for(loop)
            self._started = loop.create_task(self.backend.start(self))
            self._started.add_done_callback(_retrieve)
        return self._started

    async def close(self) -> None:
        """Stop: unsubscribe every connection (they stay open) and close the backend."""
        if self._closed:
            return
        self._closed = True
        if self._lag_sweep is not None:
            self._lag_sweep.cancel()
            self._lag_sweep = None
        for connection in list(self._members):
            self._forget(connection)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        started = self._started
        if started is not None:
            if not started.done():
                started.cancel()
            await asyncio.wait((started,))
            await self.backend.close()

    async def __aenter__(self) -> Hub:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    @property
    def ready(self) -> bool:
        """Whether the hub can publish now: started, not closed, backend available."""
        return (
            not self._closed
            and self._started is not None
            and self._started.done()
            and self.backend.available
        )

    async def wait_ready(self) -> None:
        """Wait until the backend is available (after a start or an outage)."""
        await self._ensure_started()
        assert self._available is not None
        await self._available.wait()

    def attach(self, app: Any, *, readiness: bool = True, metrics: bool | None = None) -> None:
        """Run with a :class:`portside.App`: started and closed in each worker, seen by probes.

        Adds a startup hook that starts the hub and a shutdown hook that closes
        it; with ``readiness``, a ``/readyz`` check named ``hub`` that fails
        while the hub cannot publish or its subscriptions are not live (Redis
        away); with ``metrics``, the hub's series for ``--metrics-path``
        (:mod:`portside.hub.prometheus`).

        Args:
            app: The :class:`portside.App`.
            readiness: Whether ``/readyz`` depends on the hub.
            metrics: Whether to export Prometheus series; ``None``: when
                ``prometheus_client`` is installed.
        """
        if metrics is None:
            metrics = importlib.util.find_spec("prometheus_client") is not None
        app.on_startup(self.start)
        app.on_shutdown(self.close)
        if metrics:
            from .prometheus import PrometheusExporter

            exporters: list[PrometheusExporter] = []

            async def start_metrics() -> None:
                exporters.append(PrometheusExporter(self))
                await exporters[-1].start()

            async def stop_metrics() -> None:
                while exporters:
                    await exporters.pop().stop()

            app.on_startup(start_metrics)
            # Shutdown hooks run in reverse order: the last copy, then the close.
            app.on_shutdown(stop_metrics)
        if readiness:

            def hub_ready() -> bool:
                return self.ready

            app.add_readiness_check(hub_ready, name="hub")

    # Subscriptions.

    def subscribe(
        self, connection: Connection, topic: str, *, since: Position | None = None
    ) -> asyncio.Task[None]:
        """Subscribe ``connection`` to ``topic``.

        The subscription is registered at once; the task returned completes
        when it is live (the backend delivers the topic to this process, and
        the history asked for was replayed). Awaiting it is optional.

        With ``envelope="json"``, the connection first gets a ``subscribed``
        frame with the position messages follow; with ``since``, before it,
        the messages after ``since`` that history holds, and a ``gap`` frame for
        those it no longer holds. Subscribing again with ``since`` replays
        again; without, does nothing. A connection that closes is unsubscribed
        from all its topics.

        Args:
            connection: A server (or client) connection.
            topic: The topic's name: a non-empty string.
            since: The last position the client saw, to replay what followed.

        Raises:
            HubClosed: If the hub is closed.
        """
        _check_topic(topic)
        if since is not None and not isinstance(since, Position):
            raise TypeError(f"since must be a Position or None, not {type(since).__name__}")
        started = self._ensure_started()
        loop = asyncio.get_running_loop()
        member = self._members.get(connection)
        if member is None:
            if connection.protocol.state is not OPEN:
                # Closing or closed: nothing to subscribe.
                return _done()
            watcher = loop.create_task(self._watch(connection))
            member = self._members[connection] = (set(), watcher)
            # What the application writes on it from now on goes out after
            # what the hub has for it.
            self._flusher.attach(self, connection)
        topics = member[0]
        state = self._topics.get(topic)
        if state is None:
            state = self._open_topic(topic, started)
        join = state.joining.get(connection)
        if topic in topics and since is None:
            if join is not None and join.task is not None:
                return join.task
            return _done()
        if join is not None and join.task is not None:
            join.task.cancel()
        self._flush()
        state.live.discard(connection)
        # A replay with `since` covers what a skipped subscriber missed.
        state.lagging.pop(connection, None)
        topics.add(topic)
        if len(topics) == 2:
            self._multi.add(connection)
        join = state.joining[connection] = _Join()
        task = join.task = loop.create_task(self._join(state, connection, join, since))
        task.add_done_callback(_retrieve)
        return task

    def unsubscribe(self, connection: Connection, topic: str) -> None:
        """Unsubscribe ``connection`` from ``topic``; does nothing if it is not subscribed."""
        member = self._members.get(connection)
        if member is None or topic not in member[0]:
            return
        member[0].discard(topic)
        if len(member[0]) == 1:
            self._multi.discard(connection)
        self._leave(connection, topic)
        if not member[0]:
            del self._members[connection]
            self._flusher.detach(connection)
            if member[1] is not asyncio.current_task():
                member[1].cancel()

    def topics(self, connection: Connection) -> frozenset[str]:
        """The topics ``connection`` is subscribed to."""
        member = self._members.get(connection)
        return frozenset(member[0]) if member is not None else frozenset()

    def subscribers(self, topic: str) -> int:
        """How many connections of this process are subscribed to ``topic``."""
        state = self._topics.get(topic)
        return 0 if state is None else len(state)

    # Publishing.

    async def publish(self, topic: str, message: Payload | bytearray | memoryview) -> Position:
        """Publish ``message`` to the subscribers of ``topic`` in every process.

        Messages from one publisher (awaited one after the other) reach each
        subscriber in order. Delivery is at most once; missed messages are
        recovered from history or told (see ``docs/hub.md``).

        Args:
            topic: The topic's name.
            message: ``str`` for a text message; ``bytes``-like for a binary one.

        Returns:
            The message's position in its topic.

        Raises:
            BackendUnavailable: If the backend cannot take it (Redis unreachable
                and no queueing, or the queue is full): it was not published,
                unless the error says that it may have been.
            HubClosed: If the hub is closed.
        """
        _check_topic(topic)
        if isinstance(message, (bytearray, memoryview)):
            message = bytes(message)
        elif not isinstance(message, (str, bytes)):
            raise TypeError(f"message must be str or bytes-like, not {type(message).__name__}")
        await self._ensure_started()
        try:
            position = await self.backend.publish(topic, message, self.history_for(topic))
        except HubError:
            self.metrics.publish_errors += 1
            raise
        self.metrics.published += 1
        return position

    def history_for(self, topic: str) -> int:
        """How many messages ``topic`` keeps in history, by the ``history`` setting."""
        history = self._history
        if callable(history):
            value = history(topic)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"history({topic!r}) returned {value!r}, not an int >= 0")
            return value
        return history

    # BackendListener.

    def on_message(self, topic: str, position: Position, payload: Payload) -> None:
        """Called by the backend for each message of a topic with subscribers here."""
        state = self._topics.get(topic)
        if state is None:
            return
        self.metrics.received += 1
        if state.recovering is not None:
            state.pending.append((position, payload))
        else:
            self._process(state, position, payload)

    def on_resync(self, topic: str, head: Position) -> None:
        """Called by the backend after a reconnection, with the topic's latest position."""
        state = self._topics.get(topic)
        if state is None:
            return
        if state.recovering is not None:
            state.pending.append((head, _RESYNC))
        else:
            self._process(state, head, _RESYNC)

    def on_state(self, available: bool, error: BaseException | None) -> None:
        """Called by the backend when it becomes available or unavailable."""
        event = self._available
        if event is None:  # pragma: no cover - the backend starts after the hub
            return
        if available:
            event.set()
        else:
            event.clear()

    # Receiving.

    def _process(self, state: _Topic, position: Position, payload: Any) -> None:
        """Deliver, drop or recover, by comparing ``position`` with the last one seen."""
        sequence = state.sequence
        if payload is _RESYNC:
            if sequence.last is None:
                # Just subscribed: messages after this position follow.
                sequence.advance(position)
                return
            missing = sequence.behind(position)
            if missing is None:
                return
            verdict: Missing | str = missing
        else:
            verdict = sequence.check(position)
            if verdict is NEXT:
                sequence.advance(position)
                self._deliver(state, position, payload)
                return
            if verdict is DUPLICATE:
                self.metrics.duplicates += 1
                return
        assert isinstance(verdict, Missing)
        if verdict.epoch_changed:
            self.metrics.epoch_changes += 1
            self.logger.warning(
                "hub: topic %r: new epoch %s (was %s): the backend lost its state",
                state.name,
                verdict.epoch or "(none yet)",
                sequence.last.epoch if sequence.last else None,
            )
        if verdict.count and self.history_for(state.name) > 0:
            state.recovering = task = asyncio.get_running_loop().create_task(
                self._recover(state, verdict)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            if payload is not _RESYNC:
                state.pending.appendleft((position, payload))
            return
        if verdict.count:
            self._lost(state, verdict, "backend")
        sequence.advance(position)
        if payload is not _RESYNC:
            self._deliver(state, position, payload)

    async def _recover(self, state: _Topic, missing: Missing) -> None:
        """Fetch ``missing`` from history, deliver it in order, tell what is not there."""
        expected = missing.first
        recovered = 0
        try:
            history: History | None = await self.backend.history(
                state.name, Position(missing.epoch, missing.first - 1), missing.last
            )
        except (BackendUnavailable, OSError) as exc:
            self.logger.warning(
                "hub: topic %r: cannot read history to recover %d messages: %s",
                state.name,
                missing.count,
                exc,
            )
            history = None
        try:
            for position, payload in history.entries if history is not None else ():
                if position.epoch != missing.epoch or position.offset < expected:
                    continue
                if position.offset > missing.last:
                    break
                if position.offset > expected:
                    lost = Missing(
                        missing.epoch, expected, position.offset - 1, missing.epoch_changed
                    )
                    self._lost(state, lost, "backend")
                state.sequence.advance(position)
                self._deliver(state, position, payload)
                recovered += 1
                expected = position.offset + 1
            if expected <= missing.last:
                self._lost(
                    state,
                    Missing(missing.epoch, expected, missing.last, missing.epoch_changed),
                    "backend",
                )
            self.metrics.recovered += recovered
            if recovered:
                self.logger.info(
                    "hub: topic %r: recovered %d of %d missed messages from history",
                    state.name,
                    recovered,
                    missing.count,
                )
            state.sequence.advance(Position(missing.epoch, missing.last))
        finally:
            state.recovering = None
            self._drain(state)

    def _drain(self, state: _Topic) -> None:
        pending = state.pending
        while pending and state.recovering is None and self._topics.get(state.name) is state:
            position, payload = pending.popleft()
            self._process(state, position, payload)

    def _lost(self, state: _Topic, missing: Missing, reason: GapReason) -> None:
        """``missing`` will not come: tell every subscriber of the topic."""
        self.metrics.lost += missing.count
        self.logger.warning(
            "hub: topic %r: %d messages lost (offsets %d-%d of epoch %s), %d subscribers told",
            state.name,
            missing.count,
            missing.first,
            missing.last,
            missing.epoch,
            len(state),
        )
        state.sequence.advance(Position(missing.epoch, missing.last))
        self.metrics.gaps += len(state)
        self._gap_event(Gap(state.name, missing, reason))
        frame = gap_frame(state.name, missing, reason) if self.envelope else None
        self._deliver_frame(state, frame, None, missing, reason)

    def _deliver(self, state: _Topic, position: Position, payload: Payload) -> None:
        if self.envelope is not None:
            frame: Payload = state.envelope.message(position, payload)
        else:
            frame = payload
        self._deliver_frame(state, frame, position, None, "slow")

    def _deliver_frame(
        self,
        state: _Topic,
        frame: Payload | None,
        position: Position | None,
        missing: Missing | None,
        reason: GapReason,
    ) -> None:
        """Send a message (``position``) or a gap notice (``missing``) to the subscribers."""
        for join in state.joining.values():
            if not join.buffering:
                continue
            if len(join.buffer) < JOIN_BUFFER:
                join.buffer.append((position, missing, frame))
            elif position is not None:
                join.lag.skip(position)
                self.metrics.skipped += 1
            else:
                assert missing is not None
                join.lag.add(missing, reason)
        if state.lagging:
            # Those skipped before: told first if they have room again, then
            # served with the others.
            for connection, lag in list(state.lagging.items()):
                if writable(connection):
                    self._resume(state, connection, lag)
                elif position is not None:
                    lag.skip(position)
                    self.metrics.skipped += 1
                else:
                    assert missing is not None
                    lag.add(missing, reason)
        if state.live and frame is not None:
            self._flusher.deferring(self)
            self._made += 1
            outbox = state.outbox
            outbox.append((self._made, frame, position, missing, reason))
            if len(outbox) == 1:
                self._to_flush.append(state)
                if not self._flush_scheduled:
                    self._flush_scheduled = True
                    self._flusher.schedule(self._flush_scheduled_writes)

    def _flush_scheduled_writes(self) -> None:
        """Run by the flusher: at the end of the iteration, or at a subscriber's barrier."""
        self._flush_scheduled = False
        self._flush()

    def _flush(self) -> None:
        """Write what waits in the outboxes now, in the order it was made. Never raises.

        Called as well before a connection joins or leaves a topic's live
        subscribers, or is told of a gap: the outboxes are for those live
        when their frames were made.
        """
        topics = self._to_flush
        if not topics:
            return
        self._to_flush = []
        outboxes = []
        for state in topics:
            outboxes.append((state, state.outbox))
            state.outbox = []
        try:
            self._write_outboxes(outboxes)
        except Exception:
            # A bug: the barrier that ran this must not raise in the
            # application's send(), nor the flusher stop.
            self.logger.error("hub: delivering messages failed", exc_info=True)

    def _write_outboxes(self, outboxes: list[tuple[_Topic, list[_Outgoing]]]) -> None:
        # A connection live in several of these topics gets their frames
        # merged, in the order they were made; the others get their topic's
        # outbox, one write each, the frame built once.
        merged = self._merged(outboxes) if len(outboxes) > 1 and self._multi else {}
        for state, outbox in outboxes:
            live = state.live
            if not live:
                continue
            if merged and not live.isdisjoint(merged):
                live = live.difference(merged)
            skipped = self._flusher.write(live, [item[1] for item in outbox])
            self.metrics.delivered += len(outbox) * (len(live) - len(skipped))
            for connection in skipped:
                self._skipped(state, connection, outbox)
        for connection, mine in merged.items():
            items = list(heapq.merge(*(outbox for _, outbox in mine)))
            if self._flusher.write((connection,), [item[1] for item in items]):
                for state, outbox in mine:
                    if connection in state.live:  # not closed by the policy
                        self._skipped(state, connection, outbox)
            else:
                self.metrics.delivered += len(items)

    def _merged(
        self, outboxes: list[tuple[_Topic, list[_Outgoing]]]
    ) -> dict[Connection, list[tuple[_Topic, list[_Outgoing]]]]:
        """The connections live in several of the topics of ``outboxes``, with those."""
        by_name = {state.name: (state, outbox) for state, outbox in outboxes}
        merged = {}
        for connection in self._multi:
            mine = [
                pending
                for topic in self._members[connection][0]
                if (pending := by_name.get(topic)) is not None and connection in pending[0].live
            ]
            if len(mine) > 1:
                merged[connection] = mine
        return merged

    def _skipped(
        self,
        state: _Topic,
        connection: Connection,
        items: list[_Outgoing],
    ) -> None:
        """``connection``'s backlog is full: apply the slow-consumer policy to ``items``."""
        if self.slow_consumer == "close":
            self.metrics.slow_closed += 1
            self.logger.info(
                "hub: closing a subscriber of %r with 1013: its backlog is full", state.name
            )
            self._forget(connection)
            task = asyncio.get_running_loop().create_task(
                connection.close(1013, "subscriber too slow")
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            return
        state.live.discard(connection)
        lag = state.lagging[connection] = _Lag()
        for _, _, position, missing, reason in items:
            if position is not None:
                lag.skip(position)
                self.metrics.skipped += 1
            else:
                assert missing is not None
                lag.add(missing, reason)
        if self._lag_sweep is None:
            self._lag_sweep = asyncio.get_running_loop().call_later(
                LAG_SWEEP_INTERVAL, self._sweep_lagging
            )

    def _sweep_lagging(self) -> None:
        """Tell skipped subscribers that have room again, even if no message comes."""
        self._lag_sweep = None
        waiting = False
        for state in list(self._topics.values()):
            for connection, lag in list(state.lagging.items()):
                if writable(connection):
                    self._resume(state, connection, lag)
                else:
                    waiting = True
        if waiting and not self._closed:
            self._lag_sweep = asyncio.get_running_loop().call_later(
                LAG_SWEEP_INTERVAL, self._sweep_lagging
            )

    def _resume(self, state: _Topic, connection: Connection, lag: _Lag) -> None:
        """Serve a skipped subscriber that has room again, after telling it what it missed."""
        # What waits in the outbox was skipped for it: not for it.
        self._flush()
        del state.lagging[connection]
        state.live.add(connection)
        self._tell(state, connection, lag)

    def _tell(self, state: _Topic, connection: Connection, lag: _Lag) -> None:
        """Tell ``connection`` what it missed."""
        frames: list[Payload] = []
        for missing, reason in lag.ranges:
            self._gap_event(Gap(state.name, missing, reason, connection))
            if self.envelope is not None:
                frames.append(gap_frame(state.name, missing, reason))
        if frames:
            # Nothing waits in an outbox for it: the callers flushed them.
            self._flusher.write((connection,), frames)

    def _gap_event(self, gap: Gap) -> None:
        if gap.connection is not None:
            self.metrics.gaps += 1
        if self.on_gap is not None:
            try:
                self.on_gap(gap)
            except Exception:
                self.logger.error("hub: on_gap failed", exc_info=True)

    # Subscriptions, inside.

    def _open_topic(self, topic: str, started: asyncio.Task[None]) -> _Topic:
        state = self._topics[topic] = _Topic(topic)
        subscription = self._subscribe_backend(topic, started)
        state.ready = asyncio.get_running_loop().create_task(subscription)
        state.ready.add_done_callback(_retrieve)
        return state

    async def _subscribe_backend(self, topic: str, started: asyncio.Task[None]) -> None:
        await asyncio.shield(started)
        await self.backend.subscribe(topic)

    async def _join(
        self, state: _Topic, connection: Connection, join: _Join, since: Position | None
    ) -> None:
        """Bring a new subscription up to date, then make it live."""
        assert state.ready is not None
        await asyncio.shield(state.ready)
        # From now on, what this process receives of the topic is buffered for
        # this subscription; it starts after the last position seen, which
        # costs no request to the backend.
        join.buffering = True
        position = state.sequence.last
        while True:
            try:
                if since is not None:
                    position = await self._replay(state, connection, since)
                elif position is None and self.envelope is not None:
                    position = await self.backend.head(state.name)
                break
            except BackendUnavailable:
                # Nothing arrives while the backend is away: try again once back.
                await asyncio.sleep(RETRY_DELAY)
                await self.wait_ready()
        if self.envelope is not None and position is not None:
            await connection.send(subscribed_frame(state.name, position))
        # Messages that arrived in the meantime, but none the client has.
        seen = Sequence(position)
        buffer = join.buffer
        while buffer:
            item_position, missing, frame = buffer.popleft()
            if item_position is not None:
                if seen.last is not None and seen.check(item_position) is DUPLICATE:
                    continue
                seen.advance(item_position)
            elif (
                missing is not None
                and seen.last is not None
                and seen.last.epoch == missing.epoch
                and missing.last <= seen.last.offset
            ):
                continue  # replayed from history already
            if frame is not None:
                await connection.send(frame)
                if item_position is not None:
                    self.metrics.delivered += 1
        # Live from now on: no await between the last buffered frame and this.
        if state.joining.get(connection) is join:
            # The outbox holds frames this subscription had in its buffer.
            self._flush()
            del state.joining[connection]
            if join.lag.ranges:
                self._tell(state, connection, join.lag)
            state.live.add(connection)

    async def _replay(self, state: _Topic, connection: Connection, since: Position) -> Position:
        """Send ``connection`` what followed ``since``; return the position it has then."""
        history = await self.backend.history(state.name, since)
        head = history.head
        if head.offset == 0:
            # Nothing published in the current epoch (or ever).
            return head
        if since.epoch == head.epoch:
            if since.offset >= head.offset:
                return head
            expected = since.offset + 1
            epoch_changed = False
        else:
            expected = 1
            epoch_changed = since.epoch != "" and since.offset > 0
        entries = [entry for entry in history.entries if entry[0].offset >= expected]
        first_held = entries[0][0].offset if entries else head.offset + 1
        if first_held > expected:
            missing = Missing(head.epoch, expected, first_held - 1, epoch_changed)
            self._gap_event(Gap(state.name, missing, "history", connection))
            if self.envelope is not None:
                await connection.send(gap_frame(state.name, missing, "history"))
        for position, payload in entries:
            frame = state.envelope.message(position, payload) if self.envelope else payload
            await connection.send(frame)
        self.metrics.replayed += len(entries)
        return entries[-1][0] if entries else head

    def _leave(self, connection: Connection, topic: str) -> None:
        state = self._topics.get(topic)
        if state is None:
            return
        self._flush()
        state.live.discard(connection)
        state.lagging.pop(connection, None)
        join = state.joining.pop(connection, None)
        if join is not None and join.task is not None and join.task is not asyncio.current_task():
            join.task.cancel()
        if not state:
            del self._topics[topic]
            if state.ready is not None:
                state.ready.cancel()
            if state.recovering is not None:
                state.recovering.cancel()
            self.backend.unsubscribe(topic)

    def _forget(self, connection: Connection) -> None:
        """Unsubscribe ``connection`` from everything."""
        member = self._members.pop(connection, None)
        if member is None:
            return
        topics, watcher = member
        self._multi.discard(connection)
        for topic in topics:
            self._leave(connection, topic)
        self._flusher.detach(connection)
        if watcher is not asyncio.current_task():
            watcher.cancel()

    async def _watch(self, connection: Connection) -> None:
        await connection.wait_closed()
        self._forget(connection)

    def stats(self) -> dict[str, float]:
        """The hub's counters, its backend's, and gauges: topics, subscriptions, readiness."""
        stats: dict[str, float] = dict(self.metrics.as_dict())
        stats["topics"] = len(self._topics)
        stats["subscriptions"] = sum(len(state) for state in self._topics.values())
        stats["lagging"] = sum(len(state.lagging) for state in self._topics.values())
        stats["ready"] = 1 if self.ready else 0
        stats.update(self.backend.stats())
        return stats


def _check_topic(topic: object) -> None:
    if not isinstance(topic, str):
        raise TypeError(f"topic must be a str, not {type(topic).__name__}")
    if not topic or len(topic) > MAX_TOPIC_LENGTH:
        raise ValueError(f"topic must have 1 to {MAX_TOPIC_LENGTH} characters")


def _done() -> asyncio.Task[None]:
    async def nothing() -> None:
        pass

    return asyncio.get_running_loop().create_task(nothing())


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a task's exception as retrieved: whoever awaits it still gets it."""
    if not task.cancelled():
        task.exception()
