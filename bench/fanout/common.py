"""What the fan-out benchmark's processes share: kinds, payloads, markers."""

from __future__ import annotations

import time

KINDS = (
    "portside-memory",
    "portside-memory-again",
    "websockets",
    "portside-redis",
    "socketio-redis",
)
REDIS_KINDS = ("portside-redis", "socketio-redis")
TOPIC = "t"
PAYLOAD_SIZE = 64
END_THROUGHPUT = "END-THROUGHPUT"
END_LATENCY = "END-LATENCY"


def payload(phase: str, seq: int) -> str:
    """``<phase> <seq> <monotonic ns>`` padded to PAYLOAD_SIZE characters."""
    text = f"{phase} {seq} {time.monotonic_ns()} "
    return text + "x" * max(0, PAYLOAD_SIZE - len(text))


def family(kind: str) -> str:
    """The server implementation behind a kind (the control runs the same code)."""
    return "portside-memory" if kind == "portside-memory-again" else kind
