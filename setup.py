"""Build the optional C accelerator; portside works without it."""

from __future__ import annotations

import os

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """Build the accelerator, but install the pure-Python package if that fails."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any compiler failure
            self.warn(f"portside: C accelerator not built ({exc}); using pure Python")

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001 - any compiler failure
            self.warn(f"portside: C accelerator not built ({exc}); using pure Python")


extensions = []
if os.environ.get("PORTSIDE_NO_BUILD_SPEEDUPS", "") in ("", "0"):
    extensions.append(
        Extension(
            "portside.protocol._speedups",
            sources=["portside/protocol/_speedups.c"],
            extra_compile_args=["-O3"] if os.name != "nt" else [],
            optional=True,
        )
    )

setup(ext_modules=extensions, cmdclass={"build_ext": OptionalBuildExt})
