"""Load clients, each run as its own process; each prints one JSON result on stdout."""

from __future__ import annotations
