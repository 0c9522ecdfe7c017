// A client on Node's ws that streams a fragmented message to the URL in argv[2]:
// it sends "frag" as a first fragment, waits for the server to acknowledge it
// ("got frag") before sending the last fragment "ments", expects "fragments"
// back, closes with 1000 and prints one JSON line: {"ok": ..., "closeCode": ...}.
"use strict";
const WebSocket = require("ws");

const ws = new WebSocket(process.argv[2]);
const replies = [];
const report = (result) => console.log(JSON.stringify(result));

ws.on("open", () => ws.send("frag", { fin: false }));
ws.on("message", (data) => {
  replies.push(data.toString());
  if (replies.length === 1) ws.send("ments", { fin: true });
  else ws.close(1000);
});
ws.on("close", (code) => {
  report({ ok: replies.join("|") === "got frag|fragments", replies, closeCode: code });
});
ws.on("error", (error) => {
  report({ ok: false, error: String(error) });
  process.exit(1);
});
