// A client on Node's ws: sends a series of messages to the URL in argv[2],
// checks that each comes back unchanged, closes with 1000 and prints one JSON
// line: {"ok": true, "closeCode": ..., "extensions": ...} or the error.
"use strict";
const WebSocket = require("ws");

const messages = [
  { data: "hello", binary: false },
  { data: "\u2615".repeat(5000), binary: false },
  { data: Buffer.from([0, 1, 2, 255]), binary: true },
  { data: Buffer.alloc(200000, 7), binary: true },
  { data: "", binary: false },
];

const ws = new WebSocket(process.argv[2], { perMessageDeflate: true, maxPayload: 0 });
let index = 0;
const report = (result) => {
  console.log(JSON.stringify(result));
};
const sendNext = () => ws.send(messages[index].data, { binary: messages[index].binary });

ws.on("open", sendNext);
ws.on("message", (data, isBinary) => {
  const expected = messages[index];
  const same = isBinary === expected.binary &&
    (isBinary ? Buffer.compare(data, expected.data) === 0 : data.toString() === expected.data);
  if (!same) {
    report({ ok: false, error: `message ${index} came back different` });
    process.exit(1);
  }
  index += 1;
  if (index < messages.length) sendNext();
  else ws.close(1000, "done");
});
ws.on("close", (code) => {
  report({ ok: index === messages.length, closeCode: code, extensions: ws.extensions });
});
ws.on("error", (error) => {
  report({ ok: false, error: String(error) });
  process.exit(1);
});
