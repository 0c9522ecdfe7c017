// An echo server on Node's ws, with permessage-deflate: prints its port, then
// echoes every message (text as text, binary as binary) until killed.
"use strict";
const { WebSocketServer } = require("ws");

const server = new WebSocketServer({ host: "127.0.0.1", port: 0, perMessageDeflate: true });
server.on("listening", () => console.log(server.address().port));
server.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => ws.send(data, { binary: isBinary }));
});
