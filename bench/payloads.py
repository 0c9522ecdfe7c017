"""The messages the load clients send: deterministic, so every server gets the same."""

from __future__ import annotations

import json
import random

__all__ = ["binary_payload", "json_text_payload"]

_WORDS = [
    *("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india"),
    *("juliett", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo"),
    *("sierra", "tango", "uniform", "victor", "whiskey", "xray", "yankee", "zulu"),
]


def binary_payload(size: int, seed: int = 6455) -> bytes:
    """``size`` pseudo-random bytes: incompressible, like already compressed data."""
    return random.Random(seed).randbytes(size)


def json_text_payload(size: int, seed: int = 7692) -> str:
    """A JSON array of ``size`` ASCII characters shaped like a typical API event stream.

    Keys repeat and values vary, so it compresses about as well as real traffic.
    """
    rng = random.Random(seed)
    records: list[dict[str, object]] = []
    while True:
        record: dict[str, object] = {
            "id": rng.randrange(10**9),
            "type": rng.choice(("trade", "quote", "order", "cancel")),
            "symbol": rng.choice(_WORDS).upper()[:4],
            "price": round(rng.uniform(1, 1000), 2),
            "size": rng.randrange(1, 10_000),
            "tags": rng.sample(_WORDS, 3),
            "ok": rng.random() < 0.9,
        }
        if len(json.dumps([*records, record, {"pad": ""}])) > size:
            break
        records.append(record)
    text = json.dumps([*records, {"pad": ""}])
    if len(text) > size:
        raise ValueError(f"size {size} is too small for a JSON payload")
    padding = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(size - len(text)))
    text = json.dumps([*records, {"pad": padding}])
    assert len(text) == size
    return text
