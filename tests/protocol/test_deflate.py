from __future__ import annotations

import os
import zlib

import pytest

from portside.exceptions import (
    DuplicateParameter,
    InvalidParameterName,
    InvalidParameterValue,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
)
from portside.protocol.deflate import Deflate, PerMessageDeflate
from portside.protocol.headers import ExtensionParameter, parse_extension_list


def params(text: str) -> list[ExtensionParameter]:
    """Parameters of a single permessage-deflate header value."""
    return parse_extension_list("permessage-deflate" + (f"; {text}" if text else ""))[0][1]


# Client offers.


def test_default_offer() -> None:
    assert Deflate().offer() == (
        "permessage-deflate",
        [("server_max_window_bits", "11"), ("client_max_window_bits", "11")],
    )


def test_full_offer() -> None:
    offer = Deflate(
        server_max_window_bits=None,
        client_max_window_bits=None,
        server_no_context_takeover=True,
        client_no_context_takeover=True,
    ).offer()
    assert offer[1] == [
        ("server_no_context_takeover", None),
        ("client_no_context_takeover", None),
        ("client_max_window_bits", None),
    ]


@pytest.mark.parametrize(
    ("settings", "response", "expected"),
    [
        # (local bits, remote bits, local no context, remote no context)
        ({}, "server_max_window_bits=11", (11, 11, False, False)),
        ({}, "server_max_window_bits=10; client_max_window_bits=9", (9, 10, False, False)),
        ({}, "server_max_window_bits=11; server_no_context_takeover", (11, 11, False, True)),
        ({}, "server_max_window_bits=11; client_no_context_takeover", (11, 11, True, False)),
        (
            {"server_max_window_bits": None, "client_max_window_bits": None},
            "",
            (15, 15, False, False),
        ),
        (
            {"client_no_context_takeover": True, "server_max_window_bits": None},
            "",
            (11, 15, True, False),
        ),
    ],
)
def test_client_accepts_response(
    settings: dict[str, object], response: str, expected: tuple[int, int, bool, bool]
) -> None:
    codec = Deflate(**settings).accept_response(params(response))  # type: ignore[arg-type]
    assert (
        codec.local_max_window_bits,
        codec.remote_max_window_bits,
        codec.local_no_context_takeover,
        codec.remote_no_context_takeover,
    ) == expected


@pytest.mark.parametrize(
    ("settings", "response", "error"),
    [
        ({}, "", "server ignored server_max_window_bits"),
        ({}, "server_max_window_bits=13", "server ignored server_max_window_bits"),
        (
            {"server_no_context_takeover": True},
            "server_max_window_bits=12",
            "server_no_context_takeover",
        ),
        ({}, "server_max_window_bits=12; foo", "invalid parameter name: foo"),
        ({}, "server_max_window_bits=12; server_max_window_bits=12", "duplicate parameter"),
        ({}, "server_max_window_bits=7", "invalid value for parameter server_max_window_bits"),
        ({}, "server_max_window_bits=012", "invalid value for parameter server_max_window_bits"),
        ({}, "server_max_window_bits", "missing value for parameter server_max_window_bits"),
        ({}, "server_max_window_bits=12; client_max_window_bits", "missing value"),
        (
            {},
            "server_max_window_bits=12; server_no_context_takeover=1",
            "invalid value for parameter server_no_context_takeover: 1",
        ),
    ],
)
def test_client_rejects_response(settings: dict[str, object], response: str, error: str) -> None:
    with pytest.raises(NegotiationError, match=error):
        Deflate(**settings).accept_response(params(response))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("response", "error"),
    [
        ("server_max_window_bits=12; foo", InvalidParameterName),
        ("server_max_window_bits=12; server_max_window_bits=12", DuplicateParameter),
        ("server_max_window_bits=7", InvalidParameterValue),
        ("server_max_window_bits", InvalidParameterValue),
    ],
)
def test_client_rejects_response_with_websockets_exceptions(
    response: str, error: type[NegotiationError]
) -> None:
    # The subclasses of NegotiationError that websockets raises for the same faults.
    with pytest.raises(error):
        Deflate().accept_response(params(response))


# Server answers.


def answer(deflate: Deflate, *offers: str) -> tuple[str, PerMessageDeflate] | None:
    accepted = deflate.accept_offers([params(offer) for offer in offers])
    if accepted is None:
        return None
    (_, response), codec = accepted
    return "; ".join(p if v is None else f"{p}={v}" for p, v in response), codec


def test_server_defaults_limit_both_windows() -> None:
    result = answer(Deflate(), "client_max_window_bits")
    assert result is not None
    response, codec = result
    assert response == "server_max_window_bits=11; client_max_window_bits=11"
    assert (codec.local_max_window_bits, codec.remote_max_window_bits) == (11, 11)


def test_server_without_client_max_window_bits_support() -> None:
    # The client did not say it accepts a limit: it uses up to 15 bits.
    result = answer(Deflate(), "")
    assert result is not None
    response, codec = result
    assert response == "server_max_window_bits=11"
    assert codec.remote_max_window_bits == 15


def test_server_honours_smaller_requested_window() -> None:
    result = answer(Deflate(), "server_max_window_bits=9; client_max_window_bits=10")
    assert result is not None
    response, codec = result
    assert response == "server_max_window_bits=9; client_max_window_bits=10"
    assert (codec.local_max_window_bits, codec.remote_max_window_bits) == (9, 10)


def test_server_no_context_takeover_requested_by_client() -> None:
    result = answer(Deflate(server_max_window_bits=None), "server_no_context_takeover")
    assert result is not None
    response, codec = result
    assert response == "server_no_context_takeover"
    assert codec.local_no_context_takeover


def test_server_requests_client_no_context_takeover() -> None:
    deflate = Deflate(client_no_context_takeover=True, server_max_window_bits=None)
    result = answer(deflate, "client_no_context_takeover")
    assert result is not None
    response, codec = result
    assert response == "client_no_context_takeover"
    assert codec.remote_no_context_takeover


def test_server_skips_invalid_offers() -> None:
    result = answer(Deflate(), "foo=1", "server_max_window_bits=99", "server_max_window_bits=10")
    assert result is not None
    assert result[0] == "server_max_window_bits=10"


def test_server_declines_when_no_offer_fits() -> None:
    assert answer(Deflate(), "unknown_param") is None
    assert answer(Deflate()) is None


def test_eight_bit_window_means_no_compression() -> None:
    result = answer(Deflate(), "server_max_window_bits=8")
    assert result is not None
    codec = result[1]
    assert codec.local_max_window_bits == 8
    assert not codec.can_compress


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"server_max_window_bits": 7}, "server_max_window_bits"),
        ({"client_max_window_bits": 16}, "client_max_window_bits"),
        ({"level": 10}, "level"),
        ({"mem_level": 0}, "mem_level"),
        ({"min_size": -1}, "min_size"),
    ],
)
def test_invalid_settings(settings: dict[str, object], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Deflate(**settings)  # type: ignore[arg-type]


# The codec.


def pair(no_context: bool = False, bits: int = 12) -> tuple[PerMessageDeflate, PerMessageDeflate]:
    def make() -> PerMessageDeflate:
        return PerMessageDeflate(
            remote_no_context_takeover=no_context,
            local_no_context_takeover=no_context,
            remote_max_window_bits=bits,
            local_max_window_bits=bits,
        )

    return make(), make()


@pytest.mark.parametrize("no_context", [False, True])
@pytest.mark.parametrize("bits", [9, 12, 15])
def test_round_trips(no_context: bool, bits: int) -> None:
    sender, receiver = pair(no_context, bits)
    for data in (b"", b"a", b"hello " * 1000, os.urandom(70000)):
        assert receiver.decompress(sender.compress(data), True, -1) == data


def test_fragments_round_trip() -> None:
    sender, receiver = pair()
    chunks = [b"abc" * 100, b"", b"def" * 100]
    compressed = [sender.compress(c, fin=i == 2) for i, c in enumerate(chunks)]
    out = b"".join(receiver.decompress(c, i == 2, -1) for i, c in enumerate(compressed))
    assert out == b"".join(chunks)


def test_tail_is_removed() -> None:
    sender, _ = pair()
    assert not sender.compress(b"hello").endswith(b"\x00\x00\xff\xff")


def test_no_context_takeover_frees_zlib_state() -> None:
    sender, receiver = pair(no_context=True)
    receiver.decompress(sender.compress(b"x" * 100), True, -1)
    assert sender._compressor is None
    assert receiver._decompressor is None


def test_context_takeover_makes_repeats_smaller() -> None:
    sender, _ = pair()
    first = sender.compress(os.urandom(500))
    assert len(sender.compress(b"abc" * 10)) < len(first)


def test_decompress_limit() -> None:
    sender, receiver = pair()
    data = sender.compress(bytes(100_000))
    with pytest.raises(PayloadTooBig):
        receiver.decompress(data, True, 99_999)


def test_decompress_corrupt() -> None:
    _, receiver = pair()
    with pytest.raises(ProtocolError) as info:
        receiver.decompress(b"\xff" * 10, True, -1)
    assert info.value.code == 1007


def test_interoperates_with_plain_zlib() -> None:
    _, receiver = pair(bits=15)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = compressor.compress(b"zlib" * 100) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert receiver.decompress(data[:-4], True, -1) == b"zlib" * 100


def test_repr() -> None:
    assert "local_bits=12" in repr(pair()[0])


@pytest.mark.parametrize(
    "offer",
    [
        "client_no_context_takeover",
        "client_no_context_takeover; client_max_window_bits",
        "server_no_context_takeover; client_no_context_takeover",
        "",
        "client_max_window_bits=10",
    ],
)
@pytest.mark.parametrize("client_no_context", [False, True])
def test_response_states_every_reset_the_codec_relies_on(
    offer: str, client_no_context: bool
) -> None:
    # The decompressor may only forget the context between messages if the
    # response told the client to do so (Autobahn 12.x and 13.x).
    result = answer(Deflate(client_no_context_takeover=client_no_context), offer)
    assert result is not None
    response, codec = result
    assert codec.remote_no_context_takeover == ("client_no_context_takeover" in response)
    assert codec.local_no_context_takeover == ("server_no_context_takeover" in response)


def test_client_hint_of_no_context_takeover_is_honoured_in_the_response() -> None:
    result = answer(Deflate(), "client_no_context_takeover; client_max_window_bits")
    assert result is not None
    response, codec = result
    assert response == (
        "client_no_context_takeover; server_max_window_bits=11; client_max_window_bits=11"
    )
    # The client obeys the response: it resets its compressor after each message.
    sender = PerMessageDeflate(
        remote_no_context_takeover=False,
        local_no_context_takeover=True,
        remote_max_window_bits=11,
        local_max_window_bits=11,
    )
    for _ in range(3):
        assert codec.decompress(sender.compress(b"hello hello"), True, -1) == b"hello hello"
