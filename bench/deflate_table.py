"""Memory against compression ratio for permessage-deflate settings.

``python -m bench.deflate_table`` prints, for a grid of window sizes, zlib memory
levels and compression levels, what one connection's zlib state costs (this side's
compressor plus its decompressor for the peer's messages, measured with
``tracemalloc``: what stays allocated between messages, and the peak while one
is in flight, which includes that message) and the compression ratio reached on a
stream of JSON-like text messages (compressed bytes / original bytes; lower is
better). Every message is decompressed again and compared, so a setting that
loses data fails loudly instead of looking good.

It measures portside's own codec, :class:`portside.protocol.deflate.PerMessageDeflate`,
in one process: no sockets, so it is quick and its numbers are exact.
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tracemalloc
from dataclasses import dataclass

from bench.payloads import json_text_payload
from portside.protocol.deflate import PerMessageDeflate

__all__ = ["Row", "measure", "main"]

# Sizes of the messages in the stream, repeated with a new seed each time.
SIZES = (600, 2_000, 8_000)
MESSAGES = 60


@dataclass(frozen=True)
class Row:
    """One setting and what it costs."""

    window_bits: int
    mem_level: int
    level: int
    no_context_takeover: bool
    held_kib: float
    peak_kib: float
    rss_kib: float | None
    ratio: float


def _messages(count: int) -> list[bytes]:
    return [json_text_payload(SIZES[i % len(SIZES)], seed=i).encode() for i in range(count)]


def _codec(window_bits: int, mem_level: int, level: int, no_context: bool) -> PerMessageDeflate:
    """One side's codec; both sides of a pair use the same setting."""
    return PerMessageDeflate(
        remote_max_window_bits=window_bits,
        local_max_window_bits=window_bits,
        remote_no_context_takeover=no_context,
        local_no_context_takeover=no_context,
        level=level,
        mem_level=mem_level,
    )


def _stream(
    messages: list[bytes], sender: PerMessageDeflate, receiver: PerMessageDeflate
) -> tuple[int, int]:
    """Send every message from ``sender`` to ``receiver``; return (original, compressed).

    One side of a connection holds its compressor and a decompressor; the
    sender's compressor and the receiver's decompressor are that pair.
    """
    original = compressed = 0
    for message in messages:
        payload = sender.compress(message)
        if receiver.decompress(payload, True, -1) != message:
            raise AssertionError("a message did not survive the round trip")
        original += len(message)
        compressed += len(payload)
    return original, compressed


def measure(
    messages: list[bytes],
    *,
    window_bits: int,
    mem_level: int,
    level: int,
    no_context_takeover: bool = False,
) -> Row:
    """Send ``messages`` through a pair of codecs with one setting; return the costs."""
    setting = (window_bits, mem_level, level, no_context_takeover)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    pair = _codec(*setting), _codec(*setting)
    original, compressed = _stream(messages, *pair)
    gc.collect()
    after, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del pair
    return Row(
        window_bits=window_bits,
        mem_level=mem_level,
        level=level,
        no_context_takeover=no_context_takeover,
        held_kib=(after - before) / 1024,
        peak_kib=(peak - before) / 1024,
        rss_kib=_resident_per_pair(*setting),
        ratio=compressed / original,
    )


# Codec pairs over which the resident memory is averaged.
RSS_PAIRS = 100


def _resident_bytes() -> int:
    """This process's resident set, from Linux's /proc."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def _resident_per_pair(
    window_bits: int, mem_level: int, level: int, no_context_takeover: bool
) -> float | None:
    """Resident KiB per codec pair after the stream, measured in a fresh process.

    zlib allocates more than it touches, and untouched pages cost nothing, so
    many pairs go through the same stream in a process of their own (memory
    freed by earlier measurements would hide the growth) and the growth of the
    resident set is divided among them. ``None`` where /proc is missing.
    """
    if not os.path.exists("/proc/self/statm"):
        return None
    args = [str(window_bits), str(mem_level), str(level), str(int(no_context_takeover))]
    result = subprocess.run(
        [sys.executable, "-m", "bench.deflate_table", "--resident-probe", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(result.stdout)


def _resident_probe(args: list[str]) -> None:
    window_bits, mem_level, level, no_context = map(int, args)
    setting = (window_bits, mem_level, level, bool(no_context))
    messages = _messages(MESSAGES)
    # Warm-up: imports, caches, the allocator's pools.
    _stream(messages, _codec(*setting), _codec(*setting))
    start = _resident_bytes()
    pairs = [(_codec(*setting), _codec(*setting)) for _ in range(RSS_PAIRS)]
    for sender, receiver in pairs:
        _stream(messages, sender, receiver)
    print((_resident_bytes() - start) / RSS_PAIRS / 1024)


GRID = (
    # window bits, memory level, level, no context takeover
    (15, 8, 6, False),  # zlib's defaults
    (12, 5, 6, False),
    (12, 4, 6, False),
    (11, 5, 6, False),
    (11, 4, 6, False),  # portside's defaults
    (11, 4, 1, False),
    (11, 4, 9, False),
    (10, 4, 6, False),
    (9, 4, 6, False),
    (11, 4, 6, True),
    (15, 8, 6, True),
)


def main(argv: list[str] | None = None) -> int:
    """Print the table as markdown."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--resident-probe", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.resident_probe:
        _resident_probe(args.resident_probe)
        return 0
    messages = _messages(MESSAGES)
    total = sum(map(len, messages))
    print(f"{len(messages)} JSON-like text messages, {total:,} bytes in all")
    print()
    print(
        "| window bits | memory level | level | context takeover "
        "| allocated between messages, KiB | peak, KiB | resident, KiB | ratio |"
    )
    print("| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |")
    for bits, mem_level, level, no_context in GRID:
        row = measure(
            messages,
            window_bits=bits,
            mem_level=mem_level,
            level=level,
            no_context_takeover=no_context,
        )
        takeover = "no" if no_context else "yes"
        rss = "n/a" if row.rss_kib is None else f"{row.rss_kib:.1f}"
        print(
            f"| {bits} | {mem_level} | {level} | {takeover} "
            f"| {row.held_kib:.1f} | {row.peak_kib:.1f} | {rss} | {row.ratio:.3f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
