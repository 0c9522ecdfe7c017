"""The permessage-deflate extension (RFC 7692): negotiation and the codec.

:class:`Deflate` holds what a user configures; :meth:`Deflate.offer` and
:meth:`Deflate.accept_response` run the client's side of the negotiation,
:meth:`Deflate.accept_offers` the server's. Each returns a
:class:`PerMessageDeflate`, the codec of one connection.

zlib state is the bulk of a compressed connection's memory, so the codec creates
its compressor and decompressor on first use and drops them after each message
when context takeover is off: an idle connection holds no zlib state at all.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from ..exceptions import (
    DuplicateParameter,
    InvalidParameterName,
    InvalidParameterValue,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
)
from .headers import ExtensionHeader, ExtensionParameter

__all__ = ["DEFAULT_DEFLATE", "Deflate", "PerMessageDeflate", "EXTENSION_NAME"]

EXTENSION_NAME = "permessage-deflate"

# RFC 7692 7.2.1: remove the 4 octets 0x00 0x00 0xff 0xff at the tail of a
# compressed message; 7.2.2: append them again before decompressing.
_TAIL = b"\x00\x00\xff\xff"

_PARAMS = frozenset(
    {
        "server_no_context_takeover",
        "client_no_context_takeover",
        "server_max_window_bits",
        "client_max_window_bits",
    }
)


def _window_bits(value: str | None, name: str, *, optional: bool) -> int | None:
    # RFC 7692 7.1.2.1: the value is a decimal integer from 8 to 15, without
    # leading zeros.
    if value is None:
        if optional:
            return None
        raise InvalidParameterValue(name, None)
    if value not in {str(bits) for bits in range(8, 16)}:
        raise InvalidParameterValue(name, value)
    return int(value)


def _parse_params(params: list[ExtensionParameter], *, offer: bool) -> dict[str, object]:
    """Validate the parameters of an offer or response; return them by name."""
    result: dict[str, object] = {}
    for name, value in params:
        if name not in _PARAMS:
            raise InvalidParameterName(name)
        if name in result:
            raise DuplicateParameter(name)
        if name.endswith("no_context_takeover"):
            if value is not None:
                raise InvalidParameterValue(name, value)
            result[name] = True
        else:
            # Only client_max_window_bits in an offer may come without a value.
            optional = offer and name == "client_max_window_bits"
            result[name] = _window_bits(value, name, optional=optional)
    return result


@dataclass(frozen=True)
class Deflate:
    """Settings of permessage-deflate (RFC 7692) for a server or a client.

    The defaults suit many small messages at a bounded cost: 2 KiB windows (11
    bits) and memory level 4 take about 31 KiB of zlib state per connection that
    sends and receives compressed messages, against 98 KiB with zlib's defaults
    (15 bits, level 8), for a ratio within 15 % of theirs on JSON.
    ``docs/performance.md`` has the table of memory against compression ratio.

    Attributes:
        server_max_window_bits: The server's compression window, 8 to 15. A server
            uses at most this; a client asks the server for it (``None``: no limit).
        client_max_window_bits: The client's compression window, 8 to 15. A client
            uses at most this; a server asks clients for it when they allow it.
        server_no_context_takeover: The server resets its compressor after each
            message (a server applies it; a client requests it).
        client_no_context_takeover: The client resets its compressor after each
            message (a client applies it; a server requests it).
        level: The zlib compression level, 0 (none) to 9 (best); -1 is zlib's 6.
        mem_level: The zlib memory level, 1 to 9: memory for speed and ratio.
        min_size: Messages shorter than this many bytes are sent uncompressed.
    """

    server_max_window_bits: int | None = 11
    client_max_window_bits: int | None = 11
    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    level: int = 6
    mem_level: int = 4
    min_size: int = 32

    def __post_init__(self) -> None:
        for name in ("server_max_window_bits", "client_max_window_bits"):
            bits = getattr(self, name)
            if bits is not None and not 8 <= bits <= 15:
                raise ValueError(f"{name} must be between 8 and 15, not {bits}")
        if not -1 <= self.level <= 9:
            raise ValueError(f"level must be between -1 and 9, not {self.level}")
        if not 1 <= self.mem_level <= 9:
            raise ValueError(f"mem_level must be between 1 and 9, not {self.mem_level}")
        if self.min_size < 0:
            raise ValueError(f"min_size must be >= 0, not {self.min_size}")

    # Client side.

    def offer(self) -> ExtensionHeader:
        """Return the offer a client sends in ``Sec-WebSocket-Extensions``."""
        params: list[ExtensionParameter] = []
        if self.server_no_context_takeover:
            params.append(("server_no_context_takeover", None))
        if self.client_no_context_takeover:
            params.append(("client_no_context_takeover", None))
        if self.server_max_window_bits is not None:
            params.append(("server_max_window_bits", str(self.server_max_window_bits)))
        # RFC 7692 7.1.2.2: announce that the server may limit our window; with a
        # value, promise to use at most that window.
        bits = self.client_max_window_bits
        params.append(("client_max_window_bits", None if bits is None else str(bits)))
        return (EXTENSION_NAME, params)

    def accept_response(self, params: list[ExtensionParameter]) -> PerMessageDeflate:
        """Check the server's response to :meth:`offer`; return the codec.

        Raises:
            NegotiationError: If the response is not a valid answer to the offer.
        """
        values = _parse_params(params, offer=False)
        if self.server_no_context_takeover and "server_no_context_takeover" not in values:
            # RFC 7692 7.1.1.1: a server accepting this offer includes it.
            raise NegotiationError("server ignored server_no_context_takeover")
        server_bits = values.get("server_max_window_bits")
        assert server_bits is None or isinstance(server_bits, int)
        # RFC 7692 7.1.2.1: the server answers with the same or a smaller value.
        if self.server_max_window_bits is not None and (
            server_bits is None or server_bits > self.server_max_window_bits
        ):
            raise NegotiationError("server ignored server_max_window_bits")
        client_bits = values.get("client_max_window_bits")
        assert client_bits is None or isinstance(client_bits, int)
        local_bits = self.client_max_window_bits or 15
        if client_bits is not None:
            local_bits = min(local_bits, client_bits)
        return PerMessageDeflate(
            remote_no_context_takeover="server_no_context_takeover" in values,
            local_no_context_takeover=self.client_no_context_takeover
            or "client_no_context_takeover" in values,
            remote_max_window_bits=server_bits or 15,
            local_max_window_bits=local_bits,
            level=self.level,
            mem_level=self.mem_level,
            min_size=self.min_size,
        )

    # Server side.

    def accept_offers(
        self, offers: list[list[ExtensionParameter]]
    ) -> tuple[ExtensionHeader, PerMessageDeflate] | None:
        """Pick the first acceptable client offer (RFC 7692 section 5).

        Args:
            offers: The parameters of each ``permessage-deflate`` offer, in order.

        Returns:
            The response to send and the codec, or ``None`` to decline them all.
        """
        for params in offers:
            try:
                values = _parse_params(params, offer=True)
            except NegotiationError:
                # RFC 7692 5: decline an offer with unknown, invalid or duplicate
                # parameters, and try the next one.
                continue
            response: list[ExtensionParameter] = []
            remote_no_context = self.client_no_context_takeover or bool(
                values.get("client_no_context_takeover")
            )
            local_no_context = self.server_no_context_takeover or bool(
                values.get("server_no_context_takeover")
            )
            if local_no_context:
                response.append(("server_no_context_takeover", None))
            if remote_no_context:
                # RFC 7692 7.1.1.2: the client's offer only allows this; the
                # client resets its context only if the response says so.
                response.append(("client_no_context_takeover", None))
            # Our window: at most what we allow, at most what the client asks for.
            offered = values.get("server_max_window_bits")
            assert offered is None or isinstance(offered, int)
            local_bits = self.server_max_window_bits or 15
            if offered is not None:
                local_bits = min(local_bits, offered)
            if offered is not None or local_bits < 15:
                response.append(("server_max_window_bits", str(local_bits)))
            # The client's window: ask for ours if the client allows it to be set.
            remote_bits = 15
            if "client_max_window_bits" in values:
                client_offered = values["client_max_window_bits"]
                assert client_offered is None or isinstance(client_offered, int)
                remote_bits = client_offered or 15
                if self.client_max_window_bits is not None:
                    remote_bits = min(remote_bits, self.client_max_window_bits)
                if remote_bits < 15 or client_offered is not None:
                    response.append(("client_max_window_bits", str(remote_bits)))
            codec = PerMessageDeflate(
                remote_no_context_takeover=remote_no_context,
                local_no_context_takeover=local_no_context,
                remote_max_window_bits=remote_bits,
                local_max_window_bits=local_bits,
                level=self.level,
                mem_level=self.mem_level,
                min_size=self.min_size,
            )
            return (EXTENSION_NAME, response), codec
        return None


#: The settings used by ``compression="deflate"``.
DEFAULT_DEFLATE = Deflate()


class PerMessageDeflate:
    """The permessage-deflate codec of one connection.

    "local" is this side's compressor, "remote" the peer's, whose messages this
    side decompresses.
    """

    __slots__ = (
        "_compressor",
        "_decompressor",
        "can_compress",
        "level",
        "local_max_window_bits",
        "local_no_context_takeover",
        "mem_level",
        "min_size",
        "remote_max_window_bits",
        "remote_no_context_takeover",
    )

    def __init__(
        self,
        *,
        remote_no_context_takeover: bool,
        local_no_context_takeover: bool,
        remote_max_window_bits: int,
        local_max_window_bits: int,
        level: int = 6,
        mem_level: int = 5,
        min_size: int = 32,
    ) -> None:
        self.remote_no_context_takeover = remote_no_context_takeover
        self.local_no_context_takeover = local_no_context_takeover
        self.remote_max_window_bits = remote_max_window_bits
        self.local_max_window_bits = local_max_window_bits
        self.level = level
        self.mem_level = mem_level
        self.min_size = min_size
        # zlib cannot compress raw deflate with an 8-bit window; RFC 7692 6 lets
        # an endpoint send any message uncompressed, so in that case we do.
        self.can_compress = local_max_window_bits > 8
        self._compressor: zlib._Compress | None = None
        self._decompressor: zlib._Decompress | None = None

    def __repr__(self) -> str:
        return (
            f"PerMessageDeflate(local_bits={self.local_max_window_bits}, "
            f"remote_bits={self.remote_max_window_bits}, "
            f"local_no_context={self.local_no_context_takeover}, "
            f"remote_no_context={self.remote_no_context_takeover})"
        )

    def decompress(self, payload: bytes, fin: bool, max_length: int) -> bytes:
        """Decompress one frame of a compressed message.

        Args:
            payload: The frame's payload.
            fin: Whether this is the last frame of the message.
            max_length: The most bytes the output may have; ``-1`` for no limit.

        Raises:
            PayloadTooBig: If the output would exceed ``max_length``.
            ProtocolError: If the payload is not valid deflate data (code 1007).
        """
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = zlib.decompressobj(wbits=-self.remote_max_window_bits)
            self._decompressor = decompressor
        if fin:
            payload += _TAIL
        try:
            if max_length < 0:
                data = decompressor.decompress(payload)
            else:
                # Ask for one byte more than allowed to detect an overflow without
                # inflating the rest (a small frame can expand 1000-fold).
                data = decompressor.decompress(payload, max_length + 1)
                if len(data) > max_length or decompressor.unconsumed_tail:
                    raise PayloadTooBig("decompressed message exceeds max_size")
        except zlib.error as exc:
            raise ProtocolError(f"invalid deflate data: {exc}", 1007) from None
        if fin and self.remote_no_context_takeover:
            self._decompressor = None
        return data

    def compress(self, data: bytes, fin: bool = True) -> bytes:
        """Compress one frame of a message; ``fin`` ends the message."""
        compressor = self._compressor
        if compressor is None:
            compressor = zlib.compressobj(
                self.level, zlib.DEFLATED, -self.local_max_window_bits, self.mem_level
            )
            self._compressor = compressor
        out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
        if fin:
            if out.endswith(_TAIL):
                out = out[:-4]
            if self.local_no_context_takeover:
                self._compressor = None
        return out
