"""Subscribers of tests/hub/acceptance_app.py in a process of their own.

``python -m tests.hub.subscribers --url ws://HOST:PORT/sub --clients N [--messages M]``
opens N connections, then prints ``{"subscribed": N, "pids": {pid: count}}``. Each
connection then receives until it has M messages (counting those that gap notices
said it missed), or the message ``END``; the
process prints, for each connection, what it got, and exits::

    {"done": [{"pid": ..., "received": ["one:0", ...], "gaps": [...],
               "in_order": true}, ...], "at": <time.monotonic() when all were done>}

Receiving a million messages costs one Python process seconds: the acceptance
tests spread them over such processes, beside the test's own.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import sys
import time
from typing import Any

import portside

MESSAGE = '{"type":"message",'
DATA = '"data":"'


async def subscriber(url: str) -> tuple[portside.ClientConnection, int]:
    # No compression: it would cost the servers one zlib stream per subscriber,
    # which is not what these tests measure.
    client = await portside.connect(url, max_queue=None, ping_interval=None, compression=None)
    hello = json.loads(await client.recv())
    subscribed = json.loads(await client.recv())
    assert subscribed["type"] == "subscribed", subscribed
    return client, int(hello["pid"])


async def receive(
    client: portside.ClientConnection, pid: int, messages: int | None
) -> dict[str, Any]:
    received: list[str] = []
    gaps: list[dict[str, Any]] = []
    last: dict[str, int] = collections.defaultdict(lambda: -1)
    in_order = True
    missed = 0  # told of by gap notices: counted, or a skip would mean waiting forever
    while messages is None or len(received) + missed < messages:
        frame = await client.recv()
        assert isinstance(frame, str)
        if frame.startswith(MESSAGE):
            # Cheaper than json.loads: the payload is the last field.
            data = frame[frame.rindex(DATA) + len(DATA) : -2]
            if data == "END":
                break
            name, seq = data.split(":", 2)[:2]
            number = int(seq)
            if number <= last[name]:
                in_order = False
            last[name] = number
            received.append(f"{name}:{seq}")
        else:
            gap = json.loads(frame)
            assert gap["type"] == "gap", gap
            gaps.append(gap)
            missed += int(gap["count"])
    await client.close()
    return {"pid": pid, "received": received, "gaps": gaps, "in_order": in_order}


async def main(url: str, clients: int, messages: int | None) -> None:
    semaphore = asyncio.Semaphore(100)

    async def one() -> tuple[portside.ClientConnection, int]:
        async with semaphore:
            return await subscriber(url)

    connected = await asyncio.gather(*(one() for _ in range(clients)))
    pids = collections.Counter(str(pid) for _, pid in connected)
    print(json.dumps({"subscribed": clients, "pids": pids}), flush=True)
    results = await asyncio.gather(*(receive(client, pid, messages) for client, pid in connected))
    # The same clock in every process: the test compares it with its own.
    print(json.dumps({"done": results, "at": time.monotonic()}), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--messages", type=int)
    args = parser.parse_args()
    try:
        asyncio.run(main(args.url, args.clients, args.messages))
    except KeyboardInterrupt:  # pragma: no cover - stopped by the test
        sys.exit(1)
