"""Reference leaks: the C accelerators on Debian's debug build of CPython.

``make leaks`` runs this. A debug build (``python3-dbg``) counts every reference
(``sys.gettotalrefcount``) and checks CPython's own assertions, among them those
that catch a reference count driven below zero. It needs its own virtualenv
(``build/debug/venv``, with pytest and hypothesis at the versions pinned in
pyproject.toml: wheels built for the release ABI do not load in it) and its own
build of the extensions (tools/variant.py ``debug``: ``.cpython-311d`` files in
a copy of the tree). Then:

1. tests/asyncio/test_leaks.py with ``PORTSIDE_LEAK_CHECK=1``: the reference
   counts, memory blocks, traced allocations and RSS stay flat over repeated
   echo, open and close, abort, cancellation and error paths, with the C
   accelerators and again with the pure-Python code;
2. the tests of the protocol core and of the asyncio layer's accelerator on the
   debug interpreter, for its assertions.

Usage: ``python tools/leaks.py [--python python3-dbg] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import variant

ROOT = variant.ROOT

# The tests that run the C code hardest, beside test_leaks.py; those needing
# uvloop, aiohttp or a browser are left out (no wheel loads in a debug build).
DEBUG_TESTS = [
    "tests/protocol",
    "tests/asyncio/test_speedups.py",
    "tests/asyncio/test_connection.py",
    "tests/asyncio/test_socket_io.py",
    "tests/asyncio/test_server.py",
    "tests/asyncio/test_client.py",
]


HYPOTHESIS_PROFILE = """\
# Written by tools/leaks.py: hypothesis on a debug interpreter.
from hypothesis import HealthCheck, settings

settings.register_profile(
    "debug-python", suppress_health_check=list(HealthCheck), deadline=None
)
settings.load_profile("debug-python")
"""


def pins(*names: str) -> list[str]:
    """The pinned requirements of ``names`` in pyproject.toml (``"pytest==9.2.0"``)."""
    text = (ROOT / "pyproject.toml").read_text()
    wanted = []
    for name in names:
        match = re.search(rf'"({re.escape(name)}==[^"]+)"', text)
        if match is None:
            raise SystemExit(f"no pin of {name} in pyproject.toml")
        wanted.append(match.group(1))
    return wanted


def virtualenv(python: str, directory: Path) -> str:
    """A virtualenv of ``python`` with the test tools; return its interpreter."""
    venv = directory / "venv"
    requirements = pins("pytest", "hypothesis")
    marker = venv / ".portside-requirements"
    interpreter = venv / "bin" / "python"
    if not marker.is_file() or marker.read_text() != "\n".join(requirements):
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([python, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(interpreter), "-m", "pip", "install", "--quiet", *requirements], check=True
        )
        marker.write_text("\n".join(requirements))
    return str(interpreter)


def step(title: str, command: list[str], env: dict[str, str], cwd: Path) -> bool:
    print(f"\n=== {title}\n$ {' '.join(command)}", flush=True)
    started = time.monotonic()
    status = subprocess.run(command, env=env, cwd=cwd, check=False).returncode
    print(f"=== {title}: exit status {status}, {time.monotonic() - started:.0f} s", flush=True)
    return status == 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default="python3-dbg", help="a debug build of CPython")
    parser.add_argument("--dir", type=Path, default=ROOT / "build" / "debug")
    parser.add_argument("--rounds", type=int, default=150, help="rounds per measuring window")
    options = parser.parse_args(argv)
    python = shutil.which(options.python)
    if python is None:
        print(f"{options.python} not found: apt install python3-dbg python3.11-venv")
        return 2
    directory = options.dir.resolve()
    interpreter = virtualenv(python, directory)
    tree = variant.build("debug", interpreter, directory)
    check = subprocess.run(
        [interpreter, "-c", "import sys; print(hasattr(sys, 'gettotalrefcount'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    if check.stdout.strip() != "True":
        print(f"{options.python} is not a debug build (no sys.gettotalrefcount)")
        return 2

    # A debug interpreter is several times slower: hypothesis' health checks
    # (input generation too slow) would fail tests that are fine.
    plugins = directory / "plugins"
    plugins.mkdir(exist_ok=True)
    (plugins / "portside_debug_python.py").write_text(HYPOTHESIS_PROFILE)
    env = dict(os.environ, PORTSIDE_LEAK_CHECK="1", PORTSIDE_LEAK_ROUNDS=str(options.rounds))
    env["PYTHONPATH"] = str(plugins)
    env.pop("PORTSIDE_NO_SPEEDUPS", None)
    env.pop("PORTSIDE_TEST_LOOP", None)
    env.setdefault("PORTSIDE_TEST_TIMEOUT", "300")
    pytest = [
        interpreter,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "-p",
        "portside_debug_python",
    ]
    leaks = "tests/asyncio/test_leaks.py"
    ok = step("leaks, C accelerators", [*pytest, leaks], env, tree)
    ok &= step("leaks, pure Python", [*pytest, leaks], dict(env, PORTSIDE_NO_SPEEDUPS="1"), tree)
    ok &= step("the C code's tests on the debug interpreter", [*pytest, *DEBUG_TESTS], env, tree)
    print("leaks: " + ("passed" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
