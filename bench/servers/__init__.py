"""Echo servers, one module per library, each run as its own process.

Every module takes the same options (see :mod:`bench.servers.common`) and echoes
every text or binary message back unchanged.
"""

from __future__ import annotations
