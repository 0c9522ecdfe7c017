"""The properties both I/O layers' connections read from their protocol."""

from __future__ import annotations

import uuid

from portside.connection_properties import ConnectionProperties, peer_name
from portside.protocol import CLIENT, SERVER, Close, Protocol, State
from portside.protocol.client import ClientProtocol
from portside.protocol.uri import parse_uri
from tests.framing import client_frame, close_payload


class Connection(ConnectionProperties):
    def __init__(self, protocol: Protocol) -> None:
        self.protocol = protocol
        self._id = None


def test_id_is_made_once() -> None:
    connection = Connection(Protocol(SERVER))
    first = connection.id
    assert isinstance(first, uuid.UUID)
    assert connection.id is first
    assert Connection(Protocol(SERVER)).id != first


def test_state_and_subprotocol() -> None:
    connection = Connection(Protocol(SERVER))
    assert connection.state is State.OPEN
    assert connection.subprotocol is None  # a bare Protocol negotiates none
    client = ClientProtocol(parse_uri("ws://example.com/"))
    client.subprotocol = "chat"
    assert Connection(client).subprotocol == "chat"


def test_close_code_and_reason_once_closed() -> None:
    protocol = Protocol(SERVER)
    connection = Connection(protocol)
    assert (connection.close_code, connection.close_reason) == (None, None)
    protocol.receive_data(client_frame(0x8, close_payload(1001, "bye")))
    assert connection.state is State.CLOSED
    assert (connection.close_code, connection.close_reason) == (1001, "bye")
    assert protocol.close_rcvd == Close(1001, "bye")


def test_close_code_without_close_frame() -> None:
    protocol = Protocol(CLIENT)
    connection = Connection(protocol)
    protocol.receive_eof()  # the TCP connection was lost
    assert (connection.close_code, connection.close_reason) == (1006, "")


def test_peer_name() -> None:
    assert peer_name(("127.0.0.1", 8765)) == "127.0.0.1:8765"
    assert peer_name(("::1", 8765, 0, 0)) == "::1:8765"
    assert peer_name("/run/ws.sock") == "/run/ws.sock"
    assert peer_name("") == "peer"  # an unnamed Unix socket
    assert peer_name(None) == "peer"
