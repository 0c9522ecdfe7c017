"""Build the optional C accelerator; portside works without it.

``optional=True`` makes a failed compilation (no compiler, no Python headers)
skip the extension instead of failing the install: portside then uses its
pure-Python twin. ``PORTSIDE_NO_BUILD_SPEEDUPS=1`` skips it on purpose.
"""

from __future__ import annotations

import os

from setuptools import Extension, setup

extensions = []
if os.environ.get("PORTSIDE_NO_BUILD_SPEEDUPS", "") in ("", "0"):
    for package in ("protocol", "asyncio"):
        extensions.append(
            Extension(
                f"portside.{package}._speedups",
                sources=[f"portside/{package}/_speedups.c"],
                extra_compile_args=["-O3"] if os.name != "nt" else [],
                optional=True,
            )
        )

setup(ext_modules=extensions)
