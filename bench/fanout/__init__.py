"""Fan-out benchmark: one message delivered to many WebSocket clients.

``python -m bench.fanout`` (see bench/README.md, "Fan-out"). Contenders, each a
server process pinned to CPU 1 with N subscribers on one topic:

- ``portside-memory``: ``portside.Hub()`` (in-memory backend); the publisher sends
  its messages over a WebSocket to the server, which publishes each one;
- ``portside-memory-again``: the same, a second time: the control;
- ``websockets``: websockets 17's ``broadcast()``, fed the same way;
- ``portside-redis``: ``portside.Hub(RedisBackend(...))``; the publisher is
  another process publishing with its own hub through Redis;
- ``socketio-redis``: python-socketio's ``AsyncServer`` with ``AsyncRedisManager``
  (aiohttp), clients in a room; the publisher is another process emitting with a
  write-only ``AsyncRedisManager``.
"""
