"""Build the C accelerators in a variant, in a copy of the tree of its own.

The checks of the C code need the extensions built otherwise than ``make
install`` builds them: with sanitizers, with gcov's counters, or for another
interpreter (Debian's ``python3-dbg``). Each variant lives in a directory of its
own (``build/<variant>/`` by default): a copy of the source tree, with the
variant's extensions built in place there, so that it never touches the
checkout's own build, which other jobs may be using at the same time.

Usage::

    python tools/variant.py sanitize|coverage|debug [--python PY] [--dir DIR]

prints the directory of the tree copy. The extensions are those of setup.py
(read from it, so a file added to an extension is built too), compiled with gcc
and only the variant's flags: not Python's own ``-O3 -DNDEBUG -fwrapv``, so that
asserts hold and signed overflow is undefined behaviour that UBSan reports.

Variants:

- ``sanitize``: AddressSanitizer and UndefinedBehaviorSanitizer, recoverable (a
  report does not stop the run: every report of a run is collected). The
  directory gets ``bin/python``, which runs the interpreter with ASan's runtime
  preloaded and the environment below (see WRAPPER and UBSAN_OPTIONS_C), and
  ``tools/sanitize.py`` uses it.
- ``coverage``: gcov's line counters (``--coverage``), objects and counts in
  ``<dir>/obj``; see ``tools/ccoverage.py``.
- ``debug``: no optimisation, for a debug interpreter (``python3-dbg``), whose
  headers and extension suffix are read from it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent

COMMON = [
    "-g",
    "-fPIC",
    "-Wall",
    "-Wextra",
    "-Wno-unused-parameter",
    "-Wno-missing-field-initializers",
]

FLAGS: dict[str, tuple[list[str], list[str]]] = {
    # (compile flags, link flags)
    "sanitize": (
        [
            "-O1",
            "-fno-omit-frame-pointer",
            "-fsanitize=address,undefined",
            "-fsanitize-recover=all",
        ],
        # UBSan's runtime linked into each extension, its symbols bound there:
        # see UBSAN_OPTIONS_C.
        ["-fsanitize=address,undefined", "-static-libubsan", "-Wl,-Bsymbolic"],
    ),
    "coverage": (["-O0", "--coverage"], ["--coverage"]),
    "debug": (["-O0"], []),
}

# The directories of the tree that the copy links to rather than copies.
LINKED = ["tests/asyncio/node/node_modules"]


@dataclass
class Extension:
    name: str
    sources: list[str]
    define_macros: list[tuple[str, str | None]]


def extensions() -> list[Extension]:
    """The extensions that setup.py builds, as it declares them."""
    captured: dict[str, Any] = {}

    def setup(**kwargs: Any) -> None:
        captured.update(kwargs)

    env = {key: value for key, value in os.environ.items() if key != "PORTSIDE_NO_BUILD_SPEEDUPS"}
    with mock.patch("setuptools.setup", setup), mock.patch.dict(os.environ, env, clear=True):
        code = compile((ROOT / "setup.py").read_text(), str(ROOT / "setup.py"), "exec")
        exec(code, {"__name__": "__main__", "__file__": str(ROOT / "setup.py")})
    return [
        Extension(ext.name, list(ext.sources), list(ext.define_macros or []))
        for ext in captured.get("ext_modules", [])
    ]


def interpreter_config(python: str) -> dict[str, str]:
    """The include directory and extension suffix of ``python``."""
    code = (
        "import json, sysconfig; print(json.dumps({"
        "'include': sysconfig.get_paths()['include'], "
        "'suffix': sysconfig.get_config_var('EXT_SUFFIX')}))"
    )
    result = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True)
    config: dict[str, str] = json.loads(result.stdout)
    return config


def tracked_files() -> list[str]:
    """The files of the working tree: tracked, or new and not ignored."""
    result = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return [name for name in result.stdout.split("\0") if name and (ROOT / name).is_file()]


def copy_tree(tree: Path) -> None:
    """Make ``tree`` a copy of the working tree (what changed since the last copy)."""
    wanted = set(tracked_files())
    if tree.exists():
        for path in sorted(tree.rglob("*"), reverse=True):
            relative = path.relative_to(tree).as_posix()
            if path.is_symlink() or not path.is_file():
                continue
            if relative not in wanted and not relative.endswith((".so", ".pyc")):
                path.unlink()
    for name in wanted:
        source, target = ROOT / name, tree / name
        if target.exists() and target.stat().st_mtime_ns == source.stat().st_mtime_ns:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    for name in LINKED:
        source, target = ROOT / name, tree / name
        if source.is_dir() and not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source)


def run(command: list[str]) -> None:
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True)


def build(variant: str, python: str, directory: Path) -> Path:
    """Copy the tree to ``directory/tree`` and build the variant's extensions in it."""
    tree = directory / "tree"
    objects = directory / "obj"
    copy_tree(tree)
    config = interpreter_config(python)
    compile_flags, link_flags = FLAGS[variant]
    cc = os.environ.get("CC", "gcc")
    for ext in extensions():
        target = tree / (ext.name.replace(".", "/") + config["suffix"])
        outputs = []
        sources = list(ext.sources)
        if variant == "sanitize":
            sources.append(ubsan_options_source(directory, ext.name))
        for source in sources:
            generated = Path(source).is_absolute()
            path = Path(source) if generated else tree / source
            output = objects / (Path(source).name if generated else source)
            output = output.with_suffix(".o")
            output.parent.mkdir(parents=True, exist_ok=True)
            macros = [
                f"-D{name}" if value is None else f"-D{name}={value}"
                for name, value in ext.define_macros
            ]
            # Compiled from the copy, so that gcov's notes name files of the copy.
            run(
                [
                    cc,
                    *COMMON,
                    *compile_flags,
                    *macros,
                    f"-I{config['include']}",
                    "-c",
                    str(path),
                    "-o",
                    str(output),
                ]
            )
            outputs.append(str(output))
        for stale in target.parent.glob(target.name.split(".")[0] + ".*.so"):
            stale.unlink()
        run([cc, "-shared", *link_flags, *outputs, "-o", str(target)])
    if variant == "sanitize":
        write_sanitizer_wrapper(directory, python)
    return tree


def runtime_library(name: str) -> str:
    """The path of one of gcc's runtime libraries (libasan.so...)."""
    cc = os.environ.get("CC", "gcc")
    result = subprocess.run(
        [cc, f"-print-file-name={name}"], capture_output=True, text=True, check=True
    )
    path = os.path.realpath(result.stdout.strip())
    if not os.path.exists(path):
        raise SystemExit(f"{cc} has no {name}: install its sanitizer runtime (libasan, libubsan)")
    return path


# UBSan's runtime is linked into each extension (-static-libubsan) with its
# symbols bound there (-Bsymbolic), rather than loaded beside ASan's: GCC's two
# shared runtimes then share one report file and clobber each other's reports,
# and UBSan's first report of a process goes to stderr whatever its options say.
# Each extension's copy of the runtime takes its options from this function,
# its log file among them: one file per extension and process, so that no copy
# truncates what another wrote. UBSAN_OPTIONS, read after it, must not set
# log_path.
UBSAN_OPTIONS_C = """\
/* Written by tools/variant.py for the sanitize build of {name}. */
#include <stdio.h>
#include <stdlib.h>

const char *
__ubsan_default_options(void)
{{
    static char options[4096];
    const char *reports = getenv("PORTSIDE_SANITIZER_REPORTS");
    if (reports == NULL) {{
        return "halt_on_error=0:print_stacktrace=1";
    }}
    snprintf(options, sizeof options,
             "halt_on_error=0:print_stacktrace=1:log_path=%s/ubsan-{name}", reports);
    return options;
}}
"""


def ubsan_options_source(directory: Path, extension: str) -> str:
    """Write the UBSan options of ``extension``'s sanitize build; return its path."""
    path = directory / "generated" / f"ubsan_options_{extension.replace('.', '_')}.c"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(UBSAN_OPTIONS_C.format(name=extension))
    return str(path)


# The wrapper runs the interpreter, which is not built with ASan, with ASan's
# runtime loaded first (it must come before any other library), and sets what
# the sanitizers need. sitecustomize takes LD_PRELOAD back out of the
# environment, so that the programs tests start (node, chromium, nginx...) run
# without it, and points sys.executable at the wrapper, so that the Python
# processes they start run under it too.
WRAPPER = """\
#!/bin/sh
# Written by tools/variant.py: {python} with ASan and UBSan (see tools/sanitize.py).
PORTSIDE_SANITIZER_REPORTS="${{PORTSIDE_SANITIZER_REPORTS:-{reports}}}"
mkdir -p "$PORTSIDE_SANITIZER_REPORTS"
export PORTSIDE_SANITIZER_REPORTS
export PORTSIDE_SANITIZER=address,undefined
export PORTSIDE_SANITIZER_PYTHON="{wrapper}"
export PYTHONMALLOC=malloc
export PYTHONPATH="{site}:{tree}${{PYTHONPATH:+:$PYTHONPATH}}"
export ASAN_OPTIONS="halt_on_error=0:detect_leaks=0:allocator_may_return_null=1:\
detect_stack_use_after_return=0:strict_init_order=1:\
log_path=$PORTSIDE_SANITIZER_REPORTS/asan"
unset UBSAN_OPTIONS  # see UBSAN_OPTIONS_C in tools/variant.py
export LD_PRELOAD="{libasan}${{LD_PRELOAD:+ $LD_PRELOAD}}"
exec "{python}" "$@"
"""

SITECUSTOMIZE = """\
# Written by tools/variant.py: see WRAPPER there.
import os
import sys

_preload = [
    library for library in os.environ.get("LD_PRELOAD", "").split() if "libasan" not in library
]
if _preload:
    os.environ["LD_PRELOAD"] = " ".join(_preload)
else:
    os.environ.pop("LD_PRELOAD", None)
sys.executable = os.environ.get("PORTSIDE_SANITIZER_PYTHON", sys.executable)
"""


def write_sanitizer_wrapper(directory: Path, python: str) -> None:
    """Write ``directory/bin/python`` and its sitecustomize (see WRAPPER)."""
    directory = directory.resolve()
    site = directory / "site"
    site.mkdir(parents=True, exist_ok=True)
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    wrapper = directory / "bin" / "python"
    wrapper.parent.mkdir(parents=True, exist_ok=True)
    wrapper.write_text(
        WRAPPER.format(
            python=python,
            wrapper=wrapper,
            site=site,
            tree=directory / "tree",
            reports=directory / "reports",
            libasan=runtime_library("libasan.so"),
        )
    )
    wrapper.chmod(0o755)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", choices=sorted(FLAGS))
    parser.add_argument("--python", default=sys.executable, help="the interpreter to build for")
    parser.add_argument("--dir", type=Path, help="where (default: build/<variant>)")
    options = parser.parse_args(argv)
    directory = (options.dir or ROOT / "build" / options.variant).resolve()
    tree = build(options.variant, options.python, directory)
    print(tree)
    return 0


if __name__ == "__main__":
    sys.exit(main())
