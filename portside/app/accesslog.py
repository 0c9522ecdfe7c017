"""The access log: one line per connection when it ends (``--access-log``).

Logged at INFO on the ``portside.access`` logger, as ``key=value`` pairs (logfmt)
in the text format, or as fields of the JSON object with ``--log-format json``::

    peer=127.0.0.1:50312 path=/chat status=101 subprotocol=chat duration=12.503
    close_code=1000 close_reason="bye" close_code_sent=1000 messages_in=42
    messages_out=42 bytes_in=11634 bytes_out=11508

``close_code`` is the code the peer sent (1006: none, the connection was lost);
``close_code_sent`` the code portside sent. A handler that raised adds
``error=<exception class>``. Requests refused before the upgrade are logged with
their HTTP status and no close fields. Connections that sent no request at all
(TCP probes) and requests answered by portside's own endpoints (``/healthz``,
``/readyz``, metrics) are not logged.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from ..asyncio.server import ServerConnection
from .metrics import counters_of

__all__ = ["access_fields", "format_fields", "log_connection"]

logger = logging.getLogger("portside.access")


def _peer(connection: ServerConnection) -> str:
    transport = connection.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = f"[{peer[0]}]" if ":" in str(peer[0]) else str(peer[0])
        return f"{host}:{peer[1]}"
    return str(peer) if peer else "-"


def access_fields(connection: ServerConnection, now: float) -> dict[str, Any]:
    """What the access log says about ``connection``, ended at ``now`` (loop time)."""
    request = connection.request
    response = connection.response
    fields: dict[str, Any] = {
        "peer": _peer(connection),
        "path": request.path if request is not None else "-",
        "status": response.status_code if response is not None else "-",
        "duration": round(now - connection.accepted_at, 3),
    }
    if response is None or response.status_code != 101:
        return fields
    fields["subprotocol"] = connection.subprotocol or "-"
    protocol = connection.protocol
    received = protocol.close_rcvd
    fields["close_code"] = 1006 if received is None else received.code
    fields["close_reason"] = "" if received is None else received.reason
    sent = protocol.close_sent
    fields["close_code_sent"] = sent.code if sent is not None else "-"
    messages_in, messages_out, bytes_in, bytes_out = counters_of(connection)
    fields["messages_in"] = messages_in
    fields["messages_out"] = messages_out
    fields["bytes_in"] = bytes_in
    fields["bytes_out"] = bytes_out
    if connection.handler_error is not None:
        fields["error"] = connection.handler_error
    return fields


def _value(value: Any) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' "=\\') or not text.isprintable():
        return json.dumps(text)
    return text


def format_fields(fields: dict[str, Any]) -> str:
    """``key=value`` pairs, values quoted when they hold spaces, quotes or ``=``."""
    return " ".join(f"{key}={_value(value)}" for key, value in fields.items())


def log_connection(connection: ServerConnection, now: float, json_format: bool) -> None:
    """Write the access log line of ``connection``."""
    fields = access_fields(connection, now)
    if json_format:
        logger.info("connection", extra=fields)
    else:
        logger.info("%s", format_fields(fields))
