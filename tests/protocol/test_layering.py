"""The sans-I/O core must stay free of I/O: no asyncio, socket, signal or sleeping."""

from __future__ import annotations

import ast
import os
import pathlib
import subprocess
import sys

import portside.protocol

PACKAGE = pathlib.Path(portside.protocol.__file__).parent
FORBIDDEN_MODULES = {
    "asyncio",
    "socket",
    "signal",
    "selectors",
    "ssl",
    "threading",
    "time",
    "uvloop",
}


def imported_modules(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return modules


def relative_imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    return {
        node.module or ""
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.level >= 2
    }


def test_core_imports_no_io_modules() -> None:
    sources = sorted(PACKAGE.glob("*.py"))
    assert len(sources) > 10
    for path in sources:
        forbidden = imported_modules(path) & FORBIDDEN_MODULES
        assert not forbidden, f"{path.name} imports {forbidden}"


def test_core_does_not_import_upper_layers() -> None:
    # ``from .. import x`` may only reach layer-neutral modules.
    for path in PACKAGE.glob("*.py"):
        assert relative_imports(path) <= {"exceptions"}, path.name


def test_c_accelerator_uses_no_io() -> None:
    source = PACKAGE / "_speedups.c"
    if source.exists():
        text = source.read_text()
        for word in ("sleep(", "socket", "asyncio", "signal("):
            assert word not in text


def test_importing_the_core_loads_no_io_module() -> None:
    code = (
        "import sys, portside.protocol\n"
        "bad = {'asyncio', 'socket', 'signal', 'selectors'} & set(sys.modules)\n"
        "print(sorted(bad))\n"
    )
    # portside/__init__.py loads the asyncio layer, so load the core alone.
    code = code.replace("import sys, portside.protocol", "import sys\n" + _LOAD_CORE_ONLY)
    # Without coverage's start-up hook (tests measuring subprocesses set it), which
    # imports what it needs.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE_")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert out.stdout.strip() == "[]"


_LOAD_CORE_ONLY = f"""
import types
pkg = types.ModuleType("portside"); pkg.__path__ = [{str(PACKAGE.parent)!r}]
sys.modules["portside"] = pkg
import portside.protocol
"""
