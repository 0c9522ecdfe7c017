"""Build the optional C accelerators; portside works without them.

``optional=True`` makes a failed compilation (no compiler, no Python headers)
skip the extension instead of failing the install: portside then uses its
pure-Python twin. ``PORTSIDE_NO_BUILD_SPEEDUPS=1`` skips them on purpose.
"""

from __future__ import annotations

import glob
import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError

# portside.asyncio._speedups is built from one C file per concern, which share
# _speedups.h (which lists them).
SOURCES = {
    "protocol": ["portside/protocol/_speedups.c"],
    "asyncio": sorted(glob.glob("portside/asyncio/_speedups_*.c")),
}
HEADERS = {"protocol": [], "asyncio": ["portside/asyncio/_speedups.h"]}

# Hidden visibility: the functions one C file calls in another are internal to
# the extension (only PyInit__speedups is exported), called without the PLT.
COMPILE_ARGS = ["-O3", "-fvisibility=hidden"] if os.name != "nt" else []

# Link-time optimization lets the compiler inline across the C files as it did
# within one: without it, the split costs some 45 instructions per message.
LTO_ARGS = ["-flto"] if os.name != "nt" else []


class BuildExt(build_ext):
    """build_ext, with link-time optimization where the compiler has it."""

    def build_extension(self, ext: Extension) -> None:
        """Build ext with LTO_ARGS if it has several C files; without if that fails."""
        if not LTO_ARGS or len(ext.sources) < 2:
            super().build_extension(ext)
            return
        compile_args, link_args = list(ext.extra_compile_args), list(ext.extra_link_args)
        ext.extra_compile_args = [*compile_args, *LTO_ARGS]
        ext.extra_link_args = [*link_args, "-O3", *LTO_ARGS]
        try:
            super().build_extension(ext)
        except CCompilerError as error:
            self.warn(f"{ext.name}: building with {LTO_ARGS} failed ({error}); again without")
            ext.extra_compile_args, ext.extra_link_args = compile_args, link_args
            super().build_extension(ext)


extensions = []
if os.environ.get("PORTSIDE_NO_BUILD_SPEEDUPS", "") in ("", "0"):
    for package, sources in SOURCES.items():
        extensions.append(
            Extension(
                f"portside.{package}._speedups",
                sources=sources,
                depends=HEADERS[package],
                extra_compile_args=COMPILE_ARGS,
                optional=True,
            )
        )

setup(ext_modules=extensions, cmdclass={"build_ext": BuildExt})
