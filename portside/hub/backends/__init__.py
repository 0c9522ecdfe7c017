"""Backends of the hub: where messages go between processes and what remembers them.

:class:`~portside.hub.backends.memory.MemoryBackend` serves one process;
:class:`~portside.hub.backends.redis.RedisBackend` (``portside[redis]``) many
processes on many hosts.
"""

from __future__ import annotations

from .base import Backend, BackendListener, History
from .memory import MemoryBackend

__all__ = ["Backend", "BackendListener", "History", "MemoryBackend"]
