"""The C accelerator when memory runs out: MemoryError, never a crash or a SystemError.

CPython's ``_testcapi.set_nomemory(start, stop)`` makes the allocations numbered
``start`` to ``stop`` fail. Each operation below runs with its first allocation
failing, then its second, and so on until it runs through: every error path of
the C code that an allocation can take is taken, and must raise MemoryError and
leave the objects usable. These paths are otherwise out of reach of tests, and
of the line coverage that ``make ccoverage`` holds.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import os
import pathlib
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from portside.protocol import speedups as protocol_speedups
from tests.sanitizer import not_under_sanitizer

_testcapi = pytest.importorskip("_testcapi")
speedups = pytest.importorskip("portside.protocol._speedups")

pytestmark = not_under_sanitizer("set_nomemory() hooks CPython's allocators, ASan's malloc")


@functools.cache
def setdefault_raises_memory_error() -> bool:
    """Whether this CPython's dict.setdefault() raises MemoryError when growing fails.

    CPython 3.13.0 to 3.13.5 do not (gh-109700, fixed in 3.13.6 by
    python/cpython#136642): when PyDict_SetDefaultRef() cannot allocate the
    larger key table, it counts the new key as inserted without inserting it
    and returns success with MemoryError set. The dict is then corrupt: its
    next growth reads an entry that was never written, and segfaults.
    PyType_FromModuleAndSpec() adds each method, member and getset to the new
    type's dict that way (and PyUnicode_InternFromString() a new string to the
    interned ones): a C module that creates types crashes there, not in its code.
    """

    def grow() -> None:
        # Five keys fill a new dict: the sixth needs a larger key table. A
        # dict that the bug corrupted is only deallocated here, which reads
        # the entries that were written and nothing else.
        full = {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5}
        full.setdefault("f", 6)

    try:
        fail_each_allocation(grow, limit=20)
    except SystemError as error:  # "returned a result with an exception set"
        if isinstance(error.__cause__, MemoryError):
            return False
        raise
    return True


class _Allocator(ctypes.Structure):
    """PyMemAllocatorEx, of the C API: a memory domain's allocator."""

    _fields_ = [(name, ctypes.c_void_p) for name in ("ctx", "malloc", "calloc", "realloc", "free")]


_PYMEM_DOMAIN_RAW, _PYMEM_DOMAIN_MEM = 0, 1


def _allocator_functions() -> tuple[Any, Any]:
    get_allocator = ctypes.pythonapi.PyMem_GetAllocator
    get_allocator.argtypes = [ctypes.c_int, ctypes.POINTER(_Allocator)]
    get_allocator.restype = None
    set_allocator = ctypes.pythonapi.PyMem_SetAllocator
    set_allocator.argtypes = [ctypes.c_int, ctypes.POINTER(_Allocator)]
    set_allocator.restype = None
    return get_allocator, set_allocator


def failing_objects_only() -> Callable[[], None]:
    """What makes the next set_nomemory() fail object allocations only.

    _testcapi.set_nomemory() hooks the three memory domains, and when its
    hooks are already installed only restarts the count. The returned
    function installs them failing nothing, then puts back the allocators of
    the raw and mem domains (PyMem_RawMalloc, and PyMem_Malloc, which hands
    large requests to the raw one), which the hooks only passed through to:
    memory allocated meanwhile is theirs. Allocations of the obj domain
    (PyObject_Malloc: the objects themselves) still fail; a dict's key table
    (PyMem_Malloc) no longer does.
    """
    get_allocator, set_allocator = _allocator_functions()
    raw, mem = _Allocator(), _Allocator()
    get_allocator(_PYMEM_DOMAIN_RAW, ctypes.byref(raw))
    get_allocator(_PYMEM_DOMAIN_MEM, ctypes.byref(mem))

    def unhook() -> None:
        _testcapi.set_nomemory(2**31 - 1)  # never reached
        set_allocator(_PYMEM_DOMAIN_RAW, raw)
        set_allocator(_PYMEM_DOMAIN_MEM, mem)

    # Check what this relies on: the hooks stay as they are when installed.
    unhook()
    _testcapi.set_nomemory(2**31 - 1)
    current = _Allocator()
    get_allocator(_PYMEM_DOMAIN_MEM, ctypes.byref(current))
    _testcapi.remove_mem_hooks()
    assert (current.malloc, current.ctx) == (mem.malloc, mem.ctx), "set_nomemory() re-hooked"
    return unhook


ROOT = pathlib.Path(__file__).parent.parent.parent
_IN_CHILD = "PORTSIDE_NOMEMORY_CHILD"


def in_a_fresh_interpreter(test: Callable[[], None]) -> Callable[[], None]:
    """Run the test function ``test`` in a new interpreter, not in pytest's.

    Which allocation an import makes, and in what state the interpreter meets
    its failure, depends on what ran before it: caches, free lists, the modules
    other tests imported, in the order of the suite. In some of those states
    CPython's own import machinery (importlib.util.module_from_spec(), before
    the module's code runs) loses the MemoryError ("SystemError:
    _PyEval_EvalFrameDefault returned NULL without setting an exception", seen
    on CPython 3.10 in the full suite, never alone) and the process crashes
    later. A fresh interpreter makes each run the same as every other; a crash
    or a failure in it fails the test, with its output.
    """

    @functools.wraps(test)
    def run() -> None:
        if os.environ.get(_IN_CHILD):
            test()
            return
        code = f"import {test.__module__} as m; m.{test.__name__}.__wrapped__()"
        result = subprocess.run(
            [sys.executable, "-W", "error", "-c", code],
            cwd=ROOT,
            env={**os.environ, _IN_CHILD: "1"},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"exit status {result.returncode}:\n{result.stderr}"

    return run


def fail_each_allocation(
    operation: Callable[[], Any], limit: int = 200, *, objects_only: bool = False
) -> int:
    """Run ``operation`` with allocation 0, 1, 2... failing; return how many it makes.

    With ``objects_only``, only the allocations of objects (PyObject_Malloc)
    fail, and not those of PyMem_Malloc and PyMem_RawMalloc, among them the
    key tables of dicts.
    """
    # No garbage collection meanwhile: callbacks that others registered in
    # gc.callbacks would meet the failing allocation instead. No tracing
    # either: coverage's C tracer crashes when an allocation of its own fails.
    unhook = failing_objects_only() if objects_only else None
    enabled = gc.isenabled()
    gc.disable()
    trace = sys.gettrace()
    sys.settrace(None)
    try:
        for number in range(limit):
            if unhook is not None:
                unhook()
            _testcapi.set_nomemory(number, number + 1)
            try:
                operation()
            except MemoryError:
                continue
            finally:
                _testcapi.remove_mem_hooks()
            return number
    finally:
        sys.settrace(trace)
        if enabled:
            gc.enable()
    raise AssertionError(f"{operation} still fails after {limit} allocations")


def frame(opcode: int, payload: bytes, mask: bytes | None = b"\x01\x02\x03\x04") -> bytes:
    return bytes(speedups.encode_frame(0x80 | opcode, payload, mask))


def test_module_functions() -> None:
    payload = bytes(range(256)) * 5
    assert fail_each_allocation(lambda: speedups.apply_mask(payload, b"abcd")) >= 1
    assert fail_each_allocation(lambda: speedups.encode_header(0x82, 70_000, b"abcd")) >= 1
    assert fail_each_allocation(lambda: speedups.encode_frame(0x82, payload, b"abcd")) >= 1
    assert fail_each_allocation(lambda: speedups.encode_frame(0x81, payload, None)) >= 1
    assert fail_each_allocation(lambda: speedups.new_buffer(70_000)) >= 1
    data = bytearray(
        frame(1, "é".encode() * 600) + frame(2, payload) + frame(1, b"ascii") + frame(2, b"")
    )
    for masked in (True, False):
        stream = data if masked else bytearray(frame(2, payload, None) + frame(1, b"x", None))

        def parse(stream: bytearray = stream, masked: bool = masked) -> int:
            position: int = speedups.parse_frames(stream, 0, len(stream), masked, 2**20, [])
            return position

        assert fail_each_allocation(parse) >= 1
    # Text of more than 1 KiB, unmasked through the heap, not the stack.
    big_text = bytearray(frame(1, "☕".encode() * 1000))
    fail_each_allocation(lambda: speedups.parse_frames(big_text, 0, len(big_text), True, 2**20, []))


# The reader's tests need Protocol on the C ReaderBase: not with PORTSIDE_NO_SPEEDUPS=1.
c_reader = pytest.mark.skipif(
    protocol_speedups.IMPLEMENTATION != "c",
    reason="Protocol runs on the pure-Python ReaderBase (PORTSIDE_NO_SPEEDUPS=1)",
)


def reader(masked: bool = True, max_size: int = 2**20) -> Any:
    from portside.protocol.connection import CLIENT, SERVER, Protocol

    return Protocol(SERVER if masked else CLIENT, max_size=max_size, read_limit=256)


def feed(protocol: Any, data: bytes) -> list[Any]:
    events: list[Any] = []
    view = memoryview(data)
    while view:
        buffer = protocol.get_buffer(-1)
        size = min(len(buffer), len(view))
        buffer[:size] = view[:size]
        view = view[size:]
        events += protocol.buffer_updated(size)
    return events


@c_reader
@pytest.mark.parametrize(
    "data",
    [
        frame(2, b"abc") + frame(1, b"def"),  # the fast path
        frame(2, bytes(1000)),  # a frame larger than the read: its own buffer
        frame(1, b"ab")[:4],  # cut: a tail kept for the next read
        frame(9, b"ping") + frame(2, b"after"),  # a control frame: the general parser
    ],
    ids=["fast-path", "big-frame", "tail", "control"],
)
def test_reader(data: bytes) -> None:
    # Each attempt on a fresh reader: a failed read leaves the reader's state
    # to the failure, as any exception from buffer_updated() does.
    fail_each_allocation(lambda: feed(reader(), data))


@c_reader
def test_reader_get_buffer_after_a_cut_frame() -> None:
    protocol = reader()
    feed(protocol, frame(2, b"abcdef")[:5])

    def get_buffer() -> None:
        protocol.get_buffer(-1)

    fail_each_allocation(get_buffer)
    # Usable afterwards: the rest of the frame completes it.
    assert feed(protocol, frame(2, b"abcdef")[5:]) == [b"abcdef"]


@c_reader
def test_reader_buffer_updated_direct_capsule() -> None:
    # The entry point that the asyncio accelerator calls, through its capsule.
    protocol = reader()
    data = frame(2, b"abc")

    def update() -> None:
        buffer = protocol.get_buffer(-1)
        buffer[: len(data)] = data
        with contextlib.suppress(MemoryError):
            protocol.buffer_updated(len(data))

    fail_each_allocation(update)


def test_setdefault_probe() -> None:
    # The probe finds CPython's bug where it is, and only there: elsewhere the
    # module initialisations below fail every allocation, not objects only.
    fixed = not ((3, 13) <= sys.version_info[:3] < (3, 13, 6))
    assert setdefault_raises_memory_error() is fixed


@in_a_fresh_interpreter
def test_module_initialisation() -> None:
    # A fresh module object each time: its exec slot fails at each allocation.
    # Where CPython corrupts a dict whose growth fails (gh-109700), which its
    # type creation meets, only object allocations fail: what a dict's failed
    # growth leads to in the module's code (PyModule_AddObjectRef()'s error
    # path) is tested on every other CPython.
    import importlib.util

    spec = importlib.util.find_spec("portside.protocol._speedups")
    assert spec is not None and spec.loader is not None

    def load() -> None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)  # type: ignore[union-attr]

    objects_only = not setdefault_raises_memory_error()
    assert fail_each_allocation(load, objects_only=objects_only) >= 3


# Argument and state errors that no caller of portside makes, each with its
# exception (the pure-Python twin raises the same ones where it has the path).


class Falsy:
    def __bool__(self) -> bool:
        raise ZeroDivisionError


def test_argument_errors() -> None:
    with pytest.raises(TypeError):
        speedups.encode_header(0x82, 1)
    with pytest.raises(TypeError):
        speedups.encode_frame(0x82, b"")
    buffer = bytearray(10)
    with pytest.raises(TypeError):
        speedups.parse_frames(buffer, 0, "10", True, 100, [])
    with pytest.raises(ZeroDivisionError):
        speedups.parse_frames(buffer, 0, 10, Falsy(), 100, [])
    with pytest.raises(TypeError):
        speedups.parse_frames(buffer, 0, 10, True, "100", [])


@c_reader
def test_reader_state_errors() -> None:
    protocol = reader()
    feed(protocol, frame(2, b"abcdef")[:5])  # a tail for the next read
    protocol._tail = "not bytes"  # no buffer interface
    with pytest.raises(TypeError):
        protocol.get_buffer(-1)
    protocol._tail = b"abc"
    buf = protocol._buf
    protocol._buf = b"read-only"
    with pytest.raises(BufferError):
        protocol.get_buffer(-1)
    protocol._buf = buf
    protocol._tail = b""
    protocol._big = 12345  # not a buffer
    with pytest.raises(TypeError):
        protocol.get_buffer(-1)
    protocol._big = None
    view = protocol._view
    del protocol._view
    with pytest.raises(AttributeError, match="_view"):
        protocol.get_buffer(-1)
    protocol._view = view
    protocol._buf = "not a buffer"
    with pytest.raises(TypeError):
        protocol.buffer_updated(1)
    del protocol._buf
    with pytest.raises(AttributeError, match="_buf"):
        protocol.buffer_updated(2**63 - 1)
