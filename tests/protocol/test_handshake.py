from __future__ import annotations

import base64

from portside.protocol.handshake import accept_key, check_key, generate_key


def test_accept_key_matches_rfc_6455_example() -> None:
    # RFC 6455 section 1.3.
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_generated_keys_are_valid_and_random() -> None:
    keys = {generate_key() for _ in range(100)}
    assert len(keys) == 100
    for key in keys:
        assert check_key(key)
        assert len(base64.b64decode(key)) == 16


def test_check_key_rejects_bad_keys() -> None:
    assert not check_key("not base64!")
    assert not check_key(base64.b64encode(bytes(15)).decode())
    assert not check_key("é")
    # 24 characters, the length of a good key, but not base64 of 16 bytes.
    assert not check_key("!" * 24)
    assert not check_key("é" * 24)
    assert not check_key("A" * 24)  # 18 bytes
    assert not check_key("AAAAAAAAAAAAAAAAAAAAAA=A")  # padding inside
