"""picows echo server on its callback API: a ``WSListener`` that echoes every frame."""

from __future__ import annotations

from picows import (
    WSCloseCode,
    WSFrame,
    WSListener,
    WSMsgType,
    WSTransport,
    WSUpgradeRequest,
    ws_create_server,
)

from bench.servers.common import MAX_FRAME_SIZE, ServerOptions, main

DATA_TYPES = (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION)


class Echo(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type in DATA_TYPES:
            transport.send(frame.msg_type, frame.get_payload_as_memoryview(), frame.fin)
        elif frame.msg_type is WSMsgType.CLOSE:
            code = frame.get_close_code()
            transport.send_close(WSCloseCode.OK if code is WSCloseCode.NO_INFO else code)
            transport.disconnect()


def listener_factory(request: WSUpgradeRequest) -> WSListener:
    return Echo()


async def serve(options: ServerOptions) -> None:
    if options.compression:
        raise SystemExit("picows does not implement permessage-deflate")
    server = await ws_create_server(
        listener_factory,
        options.host,
        options.port,
        ssl=options.ssl_context(),
        max_frame_size=MAX_FRAME_SIZE,
    )
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    main(serve, __doc__ or "")
