"""``python -m portside``: the same commands as the ``portside`` console script.

``python -m portside serve MODULE:ATTR [options]`` runs the application server;
``python -m portside ws://host:port/`` the interactive client; without
arguments, the usage.
"""

from __future__ import annotations

import sys

from .app.cli import main

if __name__ == "__main__":
    sys.exit(main())
