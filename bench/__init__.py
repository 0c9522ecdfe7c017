"""Side-by-side benchmark of portside and its peers: ``python -m bench``.

The harness (this package's top-level modules) starts one echo server per library
as a subprocess pinned to CPU 1, drives it with a load client pinned to CPU 0, runs
the servers in rotation for several rounds and reports medians and ratios.
``bench/README.md`` documents the options and the method.
"""

from __future__ import annotations
