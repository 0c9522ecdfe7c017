r"""The Redis backend: many workers on many hosts, through one Redis (``portside[redis]``).

Layout in Redis, for a topic ``T`` and the prefix ``P`` (default ``portside``):

- channel ``P:T`` (pub/sub) carries the messages, each as
  ``<epoch> <offset> <t|b>\\n<payload>``;
- hash ``{P:T}:meta`` holds the topic's ``epoch``, its last ``offset``, and the
  ``run_id`` of the Redis server that numbered it;
- stream ``{P:T}:history``, with ``history=N``, keeps the last N messages, entry
  ID ``<offset>-0``, fields ``k`` (``t`` or ``b``) and ``d`` (the payload).

Publishing runs one Lua script, so numbering, history and delivery are one
atomic step. The script starts a new epoch (and drops the history) when the hash
is missing (Redis restarted empty, or the key expired) or when it was written by
another Redis process (restarted from a snapshot, or a replica promoted): the
offsets it kept may have gone back, so they start again in a new epoch.

Each process has ONE pub/sub connection, whatever the number of topics and
subscribers, subscribed to the channels of the topics with local subscribers,
and a small pool of connections for publishing and reading history. When the
pub/sub connection breaks, it reconnects with exponential backoff and jitter,
subscribes again, reads each topic's latest position, and then waits until a
PING sent after that read comes back: every message published before the read
has arrived by then, so what the hub has not seen is missing (and recovered
from history, or told).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import secrets
import time
import urllib.parse
from typing import Any, Literal

try:
    import redis.asyncio as aioredis
    from redis.backoff import NoBackoff
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import RedisError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from redis.retry import Retry
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError("RedisBackend needs redis-py: pip install 'portside[redis]'") from exc

from ...protocol.options import logger_option
from ..envelope import Payload
from ..errors import BackendUnavailable, HubClosed
from ..sequence import Position
from .base import Backend, BackendListener, History

__all__ = ["OnOutage", "RedisBackend", "client_from_url"]

OnOutage = Literal["raise", "queue"]
"""What :meth:`RedisBackend.publish` does while Redis is unreachable."""

# KEYS: meta hash, history stream. ARGV: channel, kind, payload, history length,
# epoch to start if a new one starts, key TTL in milliseconds (0: none).
PUBLISH_SCRIPT = """
local info = redis.call('INFO', 'server')
local run_id = string.match(info, 'run_id:(%x+)')
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'offset', 'run_id')
local epoch = meta[1]
local offset = tonumber(meta[2]) or 0
if not epoch or meta[3] ~= run_id then
  epoch = ARGV[5]
  offset = 0
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'run_id', run_id)
end
offset = offset + 1
redis.call('HSET', KEYS[1], 'offset', offset)
local history = tonumber(ARGV[4])
if history > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', history, offset .. '-0', 'k', ARGV[2], 'd', ARGV[3])
end
local ttl = tonumber(ARGV[6])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  if history > 0 then redis.call('PEXPIRE', KEYS[2], ttl) end
end
redis.call('PUBLISH', ARGV[1], epoch .. ' ' .. offset .. ' ' .. ARGV[2] .. '\\n' .. ARGV[3])
return {epoch, offset}
"""

# KEYS: meta hash, history stream. ARGV: epoch asked, offset after which, last
# offset wanted ('+': all). Returns epoch, offset, entries: one atomic read.
HISTORY_SCRIPT = """
local meta = redis.call('HMGET', KEYS[1], 'epoch', 'offset')
if not meta[1] then return {'', 0, {}} end
local after = 0
if meta[1] == ARGV[1] then after = tonumber(ARGV[2]) end
return {meta[1], tonumber(meta[2]), redis.call('XRANGE', KEYS[2], tostring(after + 1), ARGV[3])}
"""

_CONNECTION_ERRORS = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    OSError,
    TimeoutError,
)


def client_from_url(url: str, **kwargs: Any) -> Any:
    """Build a redis-py asyncio client from a URL.

    ``redis://``, ``rediss://`` and ``unix://`` go to ``Redis`` with a
    ``BlockingConnectionPool`` (``max_connections=64`` unless given: commands
    beyond wait for a connection, up to ``timeout`` seconds);
    ``redis+cluster://host:port`` (or ``rediss+cluster://``) to
    ``RedisCluster.from_url``; ``redis+sentinel://[user:password@]host:port[,
    host:port...]/service[/db]`` (or ``rediss+sentinel://``) to redis-py's
    ``Sentinel(...).master_for(service)``. ``kwargs`` go to the client.
    """
    scheme, _, rest = url.partition("://")
    if scheme in ("redis", "rediss", "unix"):
        # Many concurrent commands wait for a connection rather than fail.
        kwargs.setdefault("max_connections", 64)
        kwargs.setdefault("timeout", kwargs.get("socket_timeout") or 20)
        pool = aioredis.BlockingConnectionPool.from_url(url, **kwargs)
        return aioredis.Redis.from_pool(pool)
    if scheme in ("redis+cluster", "rediss+cluster"):
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(f"{scheme.split('+')[0]}://{rest}", **kwargs)
    if scheme in ("redis+sentinel", "rediss+sentinel"):
        from redis.asyncio.sentinel import Sentinel

        parsed = urllib.parse.urlsplit(f"x://{rest}")
        netloc = parsed.netloc.rpartition("@")[2]
        hosts = []
        for item in netloc.split(","):
            host, port = item, "26379"
            if item.rfind(":") > item.rfind("]"):
                host, _, port = item.rpartition(":")
            hosts.append((host.strip("[]") or "localhost", int(port)))
        parts = [part for part in parsed.path.split("/") if part]
        if not parts:
            raise ValueError(f"a sentinel URL names its service: {scheme}://host:port/service")
        if parsed.username:
            kwargs.setdefault("username", urllib.parse.unquote(parsed.username))
        if parsed.password:
            kwargs.setdefault("password", urllib.parse.unquote(parsed.password))
        if len(parts) > 1:
            kwargs.setdefault("db", int(parts[1]))
        if scheme.startswith("rediss"):
            kwargs.setdefault("ssl", True)
        timeouts = ("socket_connect_timeout", "socket_timeout")
        sentinel_kwargs = {key: kwargs[key] for key in timeouts if key in kwargs}
        sentinel = Sentinel(hosts, sentinel_kwargs=sentinel_kwargs, **kwargs)  # type: ignore[no-untyped-call]
        return sentinel.master_for(parts[0])
    raise ValueError(
        f"unsupported Redis URL scheme {scheme!r}: use redis://, rediss://, unix://, "
        "redis+sentinel:// or redis+cluster://"
    )


class _Queued:
    __slots__ = ("future", "history", "payload", "topic")

    def __init__(self, topic: str, payload: Payload, history: int, future: asyncio.Future[Any]):
        self.topic = topic
        self.payload = payload
        self.history = history
        self.future = future


class RedisBackend(Backend):
    """Carries the hub's messages through Redis, between all workers of all hosts.

    Args:
        redis: A URL (see :func:`client_from_url`: ``redis://``, ``rediss://``,
            ``unix://``, ``redis+sentinel://``, ``redis+cluster://``), or a
            redis-py asyncio client made by the application (``Redis``,
            ``RedisCluster``, or ``Sentinel.master_for(...)``), which it then
            owns and closes.
        prefix: Prefix of the channels and keys, to share a Redis with others.
        on_outage: While Redis is unreachable, ``"raise"``
            :class:`~portside.hub.BackendUnavailable` at once (the default), or
            ``"queue"`` the messages, in order, and publish them once Redis is
            back; ``publish()`` then returns when the message is published.
        max_queued: With ``on_outage="queue"``, the most messages waiting;
            beyond, ``publish()`` raises :class:`~portside.hub.BackendUnavailable`.
        queue_timeout: With ``on_outage="queue"``, seconds a message may wait;
            then it is withdrawn and ``publish()`` raises. ``None``: no limit.
        key_ttl: Seconds a topic's position and history live after its last
            message (its epoch then starts anew); ``None``: forever.
        reconnect_min: First reconnection delay, in seconds; it doubles after
            each failure, up to ``reconnect_max``, and each delay is drawn
            between half of it and all of it (jitter).
        reconnect_max: Longest reconnection delay, in seconds.
        ping_interval: Seconds of silence on the pub/sub connection after which
            a PING checks that it is alive.
        ping_timeout: Seconds to wait for that PING's answer before reconnecting.
        connect_timeout: Seconds allowed to connect, for clients built from a URL.
        command_timeout: Seconds allowed for a command (publishing, reading
            history), for clients built from a URL.
        logger: A logger or its name; default ``portside.hub``.
    """

    def __init__(
        self,
        redis: str | Any = "redis://localhost:6379/0",
        *,
        prefix: str = "portside",
        on_outage: OnOutage = "raise",
        max_queued: int = 1000,
        queue_timeout: float | None = None,
        key_ttl: float | None = None,
        reconnect_min: float = 0.1,
        reconnect_max: float = 10.0,
        ping_interval: float = 5.0,
        ping_timeout: float = 5.0,
        connect_timeout: float = 5.0,
        command_timeout: float = 10.0,
        logger: logging.Logger | logging.LoggerAdapter[Any] | str | None = None,
    ) -> None:
        if on_outage not in ("raise", "queue"):
            raise ValueError(f'on_outage must be "raise" or "queue", not {on_outage!r}')
        if isinstance(max_queued, bool) or not isinstance(max_queued, int) or max_queued < 1:
            raise ValueError(f"max_queued must be an int >= 1, not {max_queued!r}")
        for name, value in (
            ("reconnect_min", reconnect_min),
            ("reconnect_max", reconnect_max),
            ("ping_interval", ping_interval),
            ("ping_timeout", ping_timeout),
            ("connect_timeout", connect_timeout),
            ("command_timeout", command_timeout),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, not {value!r}")
        if reconnect_max < reconnect_min:
            raise ValueError("reconnect_max must be >= reconnect_min")
        if queue_timeout is not None and not queue_timeout > 0:
            raise ValueError(f"queue_timeout must be > 0 or None, not {queue_timeout!r}")
        if key_ttl is not None and not key_ttl > 0:
            raise ValueError(f"key_ttl must be > 0 or None, not {key_ttl!r}")
        if not isinstance(prefix, str) or not prefix:
            raise ValueError("prefix must be a non-empty string")
        if isinstance(redis, str):
            self.url: str | None = redis
            self.client = client_from_url(
                redis,
                # Never resend a command: a publish whose answer was lost may
                # have been carried out; the hub raises instead.
                retry=Retry(NoBackoff(), 0),
                socket_connect_timeout=connect_timeout,
                socket_timeout=command_timeout,
            )
        else:
            self.url = None
            self.client = redis
        pool = getattr(self.client, "connection_pool", None)
        if pool is not None and pool.connection_kwargs.get("decode_responses"):
            raise ValueError("the Redis client must not decode responses (decode_responses=False)")
        self.logger = logger_option(logger or None, "portside.hub")  # "" too: the default
        self.prefix = prefix
        self.on_outage = on_outage
        self.max_queued = max_queued
        self.queue_timeout = queue_timeout
        self.key_ttl = key_ttl
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self._publish_script = self.client.register_script(PUBLISH_SCRIPT)
        self._history_script = self.client.register_script(HISTORY_SCRIPT)
        self._listener: BackendListener | None = None
        self._up = False  # connected, and the subscriptions restored
        self._connected = False  # the pub/sub connection answered
        self._resyncing: set[str] = set()  # restored when this empties
        self._closed = False
        self._supervisor: asyncio.Task[None] | None = None
        self._first_attempt: asyncio.Future[None] | None = None
        self._pubsub: Any = None
        # Topics wanted, and the futures subscribe() waits on until they flow.
        self._wanted: dict[str, asyncio.Future[None]] = {}
        self._sent: set[str] = set()  # SUBSCRIBE sent on the current connection
        self._unsynced: set[str] = set()  # confirmed, latest position not read yet
        self._barriers: dict[bytes, dict[str, Position]] = {}
        # Topics whose latest position is being checked (from the confirmation
        # of their SUBSCRIBE to the answer to the PING after the read), and the
        # last position received of each meanwhile: see _synced().
        self._window: dict[str, Position | None] = {}
        self._queue: collections.deque[_Queued] = collections.deque()
        self._flushing: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._last_error: BaseException | None = None
        self._down_since: float | None = None
        self.reconnects = 0
        self.outage_seconds = 0.0

    # Backend.

    @property
    def available(self) -> bool:  # noqa: D102
        return self._up and not self._closed

    async def start(self, listener: BackendListener) -> None:
        """Start the pub/sub connection; return after the first attempt, even failed."""
        self._listener = listener
        loop = asyncio.get_running_loop()
        self._first_attempt = loop.create_future()
        self._supervisor = loop.create_task(self._supervise())
        await asyncio.shield(self._first_attempt)

    async def close(self) -> None:  # noqa: D102
        if self._closed:
            return
        self._closed = True
        self._up = False
        for item in self._queue:
            if not item.future.done():
                item.future.set_exception(HubClosed("the hub closed: message not published"))
        self._queue.clear()
        tasks = [task for task in (self._supervisor, self._flushing) if task is not None]
        tasks.extend(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
        for future in self._wanted.values():
            if not future.done():
                future.cancel()
        self._wanted.clear()
        await self._drop_pubsub()
        await self.client.aclose()
        # A client made by Sentinel.master_for: its connections to the sentinels too.
        pool = getattr(self.client, "connection_pool", None)
        manager = getattr(pool, "sentinel_manager", None)
        for sentinel in getattr(manager, "sentinels", ()):
            await sentinel.aclose()

    async def publish(self, topic: str, payload: Payload, history: int) -> Position:  # noqa: D102
        if self._closed:
            raise HubClosed("the hub is closed")
        if not self._up or self._queue:
            if self.on_outage == "raise":
                raise BackendUnavailable(
                    f"Redis is unreachable ({self._describe_error()}): message not published"
                )
            return await self._enqueue(topic, payload, history)
        try:
            return await self._publish_now(topic, payload, history)
        except _CONNECTION_ERRORS as exc:
            self._trouble(exc)
            raise BackendUnavailable(
                f"the connection to Redis broke while publishing ({exc}): "
                "the message may or may not have been published"
            ) from exc

    async def subscribe(self, topic: str) -> None:  # noqa: D102
        if self._closed:
            raise HubClosed("the hub is closed")
        future = self._wanted.get(topic)
        if future is None:
            future = self._wanted[topic] = asyncio.get_running_loop().create_future()
            if self._connected and self._pubsub is not None:
                await self._send_subscribe([topic])
        await asyncio.shield(future)

    def unsubscribe(self, topic: str) -> None:  # noqa: D102
        future = self._wanted.pop(topic, None)
        if future is not None and not future.done():
            future.cancel()
        self._unsynced.discard(topic)
        self._window.pop(topic, None)
        if topic in self._resyncing:
            self._resyncing.discard(topic)
            if not self._resyncing and self._connected and not self._up:
                self._set_up()
        if topic in self._sent:
            self._sent.discard(topic)
            pubsub = self._pubsub
            if self._connected and pubsub is not None:
                self._spawn(self._send_unsubscribe(pubsub, topic))

    async def head(self, topic: str) -> Position:  # noqa: D102
        try:
            epoch, offset = await self.client.hmget(self._meta_key(topic), "epoch", "offset")
        except _CONNECTION_ERRORS as exc:
            self._trouble(exc)
            raise BackendUnavailable(f"cannot read the position of {topic!r}: {exc}") from exc
        return Position(epoch.decode() if epoch else "", int(offset or 0))

    async def history(  # noqa: D102
        self, topic: str, after: Position, upto: int | None = None
    ) -> History:
        try:
            epoch, offset, entries = await self._history_script(
                keys=[self._meta_key(topic), self._history_key(topic)],
                args=[after.epoch, after.offset, "+" if upto is None else str(upto)],
            )
        except _CONNECTION_ERRORS as exc:
            self._trouble(exc)
            raise BackendUnavailable(f"cannot read the history of {topic!r}: {exc}") from exc
        epoch = epoch.decode() if isinstance(epoch, bytes) else str(epoch)
        held: list[tuple[Position, Payload]] = []
        for entry_id, fields in entries:
            values = dict(zip(fields[::2], fields[1::2], strict=True))
            data = values.get(b"d", b"")
            payload: Payload = data.decode() if values.get(b"k") == b"t" else data
            held.append((Position(epoch, int(entry_id.split(b"-")[0])), payload))
        return History(Position(epoch, int(offset)), held)

    def stats(self) -> dict[str, float]:  # noqa: D102
        outage = self.outage_seconds
        if self._down_since is not None:
            outage += time.monotonic() - self._down_since
        return {
            "redis_up": 1 if self.available else 0,
            "redis_reconnects": self.reconnects,
            "redis_outage_seconds": outage,
            "publish_queued": len(self._queue),
        }

    # Publishing.

    def _meta_key(self, topic: str) -> str:
        return f"{{{self.prefix}:{topic}}}:meta"

    def _history_key(self, topic: str) -> str:
        return f"{{{self.prefix}:{topic}}}:history"

    def _channel(self, topic: str) -> str:
        return f"{self.prefix}:{topic}"

    async def _publish_now(self, topic: str, payload: Payload, history: int) -> Position:
        if isinstance(payload, str):
            kind, data = "t", payload.encode()
        else:
            kind, data = "b", payload
        ttl = 0 if self.key_ttl is None else int(self.key_ttl * 1000)
        epoch, offset = await self._publish_script(
            keys=[self._meta_key(topic), self._history_key(topic)],
            args=[self._channel(topic), kind, data, history, secrets.token_hex(4), ttl],
        )
        return Position(epoch.decode() if isinstance(epoch, bytes) else str(epoch), int(offset))

    async def _enqueue(self, topic: str, payload: Payload, history: int) -> Position:
        if len(self._queue) >= self.max_queued:
            raise BackendUnavailable(
                f"Redis is unreachable ({self._describe_error()}) and {self.max_queued} "
                "messages wait already: message not published"
            )
        future: asyncio.Future[Position] = asyncio.get_running_loop().create_future()
        item = _Queued(topic, payload, history, future)
        self._queue.append(item)
        try:
            if self.queue_timeout is None:
                return await asyncio.shield(future)
            return await asyncio.wait_for(asyncio.shield(future), self.queue_timeout)
        except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
            if future.done() and not future.cancelled() and future.exception() is None:
                if isinstance(exc, asyncio.CancelledError):
                    raise
                return future.result()  # pragma: no cover - published at the deadline
            if item in self._queue:
                # Still waiting: withdrawn, never published.
                self._queue.remove(item)
                future.cancel()
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise BackendUnavailable(
                f"Redis stayed unreachable for {self.queue_timeout} s "
                f"({self._describe_error()}): message not published"
            ) from None

    async def _flush(self) -> None:
        """Publish the queued messages, in order, now that Redis is back."""
        queue = self._queue
        while queue and self._up:
            item = queue[0]
            try:
                position = await self._publish_now(item.topic, item.payload, item.history)
            except _CONNECTION_ERRORS as exc:
                queue.popleft()
                if not item.future.done():
                    item.future.set_exception(
                        BackendUnavailable(
                            f"the connection to Redis broke while publishing ({exc}): "
                            "the message may or may not have been published"
                        )
                    )
                self._trouble(exc)
                return
            except Exception as exc:
                queue.popleft()
                if not item.future.done():
                    item.future.set_exception(exc)
                continue
            queue.popleft()
            if not item.future.done():
                item.future.set_result(position)

    # The pub/sub connection.

    async def _supervise(self) -> None:
        attempt = 0
        while not self._closed:
            try:
                await self._connect_and_listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._up:
                    attempt = 0  # it was working: start the backoff anew
                if not isinstance(exc, (*_CONNECTION_ERRORS, RedisError)):
                    self.logger.error("hub: Redis listener failed", exc_info=exc)
                self._set_down(exc)
            finally:
                await self._drop_pubsub()
                self._first_done()
            if self._closed:
                return
            ceiling = min(self.reconnect_max, self.reconnect_min * 2**attempt)
            attempt += 1
            delay = ceiling / 2 + random.uniform(0, ceiling / 2)
            self.logger.debug("hub: reconnecting to Redis in %.2f s", delay)
            await asyncio.sleep(delay)

    def _first_done(self) -> None:
        first = self._first_attempt
        if first is not None and not first.done():
            first.set_result(None)

    async def _connect_and_listen(self) -> None:
        pubsub = self._pubsub = self.client.pubsub()
        self._sent.clear()
        self._unsynced.clear()
        self._barriers.clear()
        self._window.clear()
        # Connect, and make sure it answers.
        token = b"hello-" + secrets.token_hex(4).encode()
        await pubsub.ping(token)
        while True:
            message = await pubsub.get_message(timeout=self.ping_timeout)
            if message is None:
                raise TimeoutError("Redis did not answer PING")
            if message["type"] == "pong" and message["data"] == token:
                break
        if self._down_since is not None:
            # Publishing connections opened before the outage are dead: start anew.
            pool = getattr(self.client, "connection_pool", None)
            if pool is not None:
                await pool.disconnect()
        self._connected = True
        # Available once every topic is subscribed again and its position checked.
        self._resyncing = set(self._wanted)
        if self._wanted:
            await self._send_subscribe(list(self._wanted))
        else:
            self._set_up()
        await self._listen(pubsub)

    async def _listen(self, pubsub: Any) -> None:
        listener = self._listener
        assert listener is not None
        prefix = self.prefix.encode() + b":"
        skip = len(prefix)
        live_token: bytes | None = None
        live_sent = 0.0
        while True:
            timeout = 0.0 if self._unsynced else self.ping_interval
            message = await pubsub.get_message(timeout=timeout)
            if message is None:
                if self._unsynced:
                    await self._sync(pubsub)
                    continue
                now = time.monotonic()
                if live_token is None:
                    live_token = b"alive-" + secrets.token_hex(4).encode()
                    live_sent = now
                    await pubsub.ping(live_token)
                elif now - live_sent > self.ping_timeout:
                    raise TimeoutError(f"no answer to PING within {self.ping_timeout} s")
                continue
            kind = message["type"]
            if kind == "message":
                channel = message["channel"]
                if not channel.startswith(prefix):  # pragma: no cover - not ours
                    continue
                topic = channel[skip:].decode()
                if topic not in self._wanted:
                    continue
                header, _, data = message["data"].partition(b"\n")
                epoch, offset, text = header.split(b" ")
                payload: Payload = data.decode() if text == b"t" else data
                position = Position(epoch.decode(), int(offset))
                if topic in self._window:
                    self._window[topic] = position
                listener.on_message(topic, position, payload)
            elif kind == "subscribe":
                topic = message["channel"][skip:].decode()
                if topic in self._wanted:
                    # Also after a reconnection made by redis-py itself.
                    self._unsynced.add(topic)
                    self._window.setdefault(topic, None)
            elif kind == "pong":
                token = message["data"]
                if token == live_token:
                    live_token = None
                else:
                    self._synced(token)
            if live_token is not None and time.monotonic() - live_sent > self.ping_timeout:
                raise TimeoutError(f"no answer to PING within {self.ping_timeout} s")

    async def _sync(self, pubsub: Any) -> None:
        """Read the latest positions of the topics just subscribed, then PING as a barrier."""
        topics = list(self._unsynced)
        self._unsynced.clear()
        pipe = self.client.pipeline(transaction=False)
        for topic in topics:
            pipe.hmget(self._meta_key(topic), "epoch", "offset")
        heads = {}
        for topic, (epoch, offset) in zip(topics, await pipe.execute(), strict=True):
            heads[topic] = Position(epoch.decode() if epoch else "", int(offset or 0))
        token = b"sync-" + secrets.token_hex(6).encode()
        self._barriers[token] = heads
        await pubsub.ping(token)

    def _synced(self, token: bytes) -> None:
        """Every message published before these positions were read has arrived."""
        heads = self._barriers.pop(token, None)
        if heads is None:
            return
        listener = self._listener
        assert listener is not None
        pending = set(self._unsynced).union(*self._barriers.values())
        for topic, head in heads.items():
            future = self._wanted.get(topic)
            if future is None:
                continue
            # Messages published after the read may have arrived before this
            # answer: the listener has them, and the head must not take it back
            # before them (it would tell them as missing). The last one received
            # since the SUBSCRIBE, from this same Redis, is newer than the head
            # if its offset is higher, or if its epoch differs: every message of
            # the head's epoch published before the read has arrived by now, so
            # it would be of that epoch had it come before the read. The usual
            # case: Redis restarted empty, the topic had no epoch when read, and
            # its first message came before this answer. (Or the topic's keys
            # expired after that message and before the read: then the next
            # message shows the new epoch.)
            latest = self._window.get(topic)
            if topic not in pending:
                self._window.pop(topic, None)
            if latest is not None and (latest.epoch != head.epoch or latest.offset > head.offset):
                head = latest
            listener.on_resync(topic, head)
            if not future.done():
                future.set_result(None)
            self._resyncing.discard(topic)
        if not self._resyncing and not self._up:
            self._set_up()

    async def _send_subscribe(self, topics: list[str]) -> None:
        topics = [topic for topic in topics if topic not in self._sent]
        if not topics:
            return
        self._sent.update(topics)
        try:
            await self._pubsub.subscribe(*(self._channel(topic) for topic in topics))
        except _CONNECTION_ERRORS as exc:
            # The listener sees it too, and subscribes again after reconnecting.
            self._trouble(exc)

    async def _send_unsubscribe(self, pubsub: Any, topic: str) -> None:
        try:
            await pubsub.unsubscribe(self._channel(topic))
        except _CONNECTION_ERRORS as exc:
            self._trouble(exc)

    async def _drop_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()

    # State.

    def _set_up(self) -> None:
        was_down = self._down_since
        self._up = True
        self._last_error = None
        if was_down is not None:
            outage = time.monotonic() - was_down
            self.outage_seconds += outage
            self._down_since = None
            self.reconnects += 1
            self.logger.warning(
                "hub: Redis reachable again after %.1f s; subscribing to %d topics again",
                outage,
                len(self._wanted),
            )
        else:
            self.logger.info("hub: connected to Redis")
        self._first_done()
        if self._listener is not None:
            self._listener.on_state(True, None)
        if self._queue and (self._flushing is None or self._flushing.done()):
            self._flushing = asyncio.get_running_loop().create_task(self._flush())

    def _set_down(self, exc: BaseException) -> None:
        self._last_error = exc
        if self._down_since is None:
            self._down_since = time.monotonic()
            self.logger.warning(
                "hub: Redis unreachable (%s); reconnecting; meanwhile publishing %s",
                _describe(exc),
                "raises" if self.on_outage == "raise" else f"queues up to {self.max_queued}",
            )
        else:
            self.logger.debug("hub: Redis still unreachable (%s)", _describe(exc))
        self._connected = False
        was_up, self._up = self._up, False
        if was_up and self._listener is not None:
            self._listener.on_state(False, exc)

    def _trouble(self, exc: BaseException) -> None:
        """A command failed for want of a connection: let the listener find out for sure."""
        self._last_error = exc
        pubsub = self._pubsub
        if pubsub is not None and self._up:
            # A PING now rather than after ping_interval of silence.
            self._spawn(self._probe(pubsub))

    async def _probe(self, pubsub: Any) -> None:
        try:
            await pubsub.ping(b"probe")
        except _CONNECTION_ERRORS:
            supervisor = self._supervisor
            if supervisor is not None and self._pubsub is pubsub:
                # The listener may be waiting for data that will not come.
                connection = getattr(pubsub, "connection", None)
                if connection is not None:
                    await connection.disconnect()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _describe_error(self) -> str:
        return _describe(self._last_error) if self._last_error is not None else "not connected"


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
