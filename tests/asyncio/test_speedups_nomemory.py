"""The asyncio accelerator when memory runs out at import: MemoryError, never a crash.

As tests/protocol/test_speedups_nomemory.py does for the protocol core: the
module's initialisation (interned names, types, the capsules and slots it looks
up) runs with its first allocation failing, then its second, and so on (on
CPython 3.13.0 to 3.13.5, its object allocations only: gh-109700).
"""

from __future__ import annotations

import importlib.util

import pytest

from tests.protocol.test_speedups_nomemory import (
    fail_each_allocation,
    setdefault_raises_memory_error,
)
from tests.sanitizer import not_under_sanitizer

pytest.importorskip("_testcapi")
pytest.importorskip("portside.asyncio._speedups")

pytestmark = not_under_sanitizer("set_nomemory() hooks CPython's allocators, ASan's malloc")


def test_module_initialisation() -> None:
    spec = importlib.util.find_spec("portside.asyncio._speedups")
    assert spec is not None
    assert spec.loader is not None

    def load() -> None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # type: ignore[union-attr]

    # Where CPython corrupts a dict whose growth fails (gh-109700: see
    # setdefault_raises_memory_error()), as it creates Waiter, Operation and
    # ConnectionBase, only object allocations fail.
    objects_only = not setdefault_raises_memory_error()
    assert fail_each_allocation(load, limit=2000, objects_only=objects_only) >= 10
