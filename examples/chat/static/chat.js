// The chat's browser client: the browser's own WebSocket API, nothing else.
//
// Rooms are topics of the server's hub. For each room the client remembers the
// position (epoch, offset) of the last message it showed. When the connection
// drops it reconnects with exponential backoff and jitter, and joins its rooms
// again with `since` = that position: the server replays what was missed from
// history (shown as "recovered"), or says how many messages are gone ("gap").
"use strict";

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const rooms = new Map(); // room -> {epoch, offset} | null (joined, nothing seen yet)
const replaying = new Map(); // room -> messages replayed since the last join
let socket = null;
let attempt = 0;
// Reconnection delays: first `retry` seconds (default 1), doubling up to 30 s.
const firstDelay = Number(params.get("retry") || "1");
window.chatEvents = []; // what happened, for people and tests: ["connected", ...]

function setStatus(text, cls) {
  $("status").textContent = text;
  $("status").className = cls;
  window.chatEvents.push(text);
}

function show(cls, parts, data = {}) {
  const item = document.createElement("li");
  item.className = cls;
  for (const [name, value] of Object.entries(data)) item.dataset[name] = value;
  for (const [partClass, text] of parts) {
    const span = document.createElement("span");
    if (partClass) span.className = partClass;
    span.textContent = text;
    item.append(span);
  }
  $("messages").append(item);
  item.scrollIntoView({ block: "end" });
}

function roomOf(topic) {
  return topic.startsWith("chat:") ? topic.slice(5) : topic;
}

function send(request) {
  if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(request));
}

function join(room) {
  if (!rooms.has(room)) rooms.set(room, null);
  replaying.set(room, 0);
  send({ type: "join", room, since: rooms.get(room) });
}

function onFrame(frame) {
  switch (frame.type) {
    case "hello":
      $("worker").textContent = String(frame.worker);
      break;
    case "subscribed": {
      const room = roomOf(frame.topic);
      const recovered = replaying.get(room) || 0;
      replaying.delete(room);
      rooms.set(room, { epoch: frame.epoch, offset: frame.offset });
      if (recovered) show("notice", [["", `${recovered} missed messages recovered in ${room}`]]);
      window.chatEvents.push(`joined ${room}`);
      break;
    }
    case "message": {
      const room = roomOf(frame.topic);
      const last = rooms.get(room);
      if (last && last.epoch === frame.epoch && frame.offset <= last.offset) break; // seen
      rooms.set(room, { epoch: frame.epoch, offset: frame.offset });
      const { name, text } = JSON.parse(frame.data);
      const isReplay = replaying.has(room);
      if (isReplay) replaying.set(room, replaying.get(room) + 1);
      show(isReplay ? "message recovered" : "message",
        [["room", room], ["name", name], ["text", text]],
        { room, offset: frame.offset, epoch: frame.epoch });
      break;
    }
    case "gap": {
      const room = roomOf(frame.topic);
      rooms.set(room, { epoch: frame.epoch, offset: frame.last });
      show("gap", [["", `${frame.count} messages missed in ${room} (${frame.reason})`]],
        { room, count: frame.count });
      break;
    }
    case "error":
      show("error", [["", frame.message]]);
      break;
  }
}

function connect() {
  setStatus(attempt ? "reconnecting" : "connecting", "connecting");
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ws`);
  socket = ws;
  ws.onopen = () => {
    attempt = 0;
    setStatus("connected", "connected");
    for (const room of rooms.keys()) join(room);
  };
  ws.onmessage = (event) => onFrame(JSON.parse(event.data));
  ws.onclose = (event) => {
    if (socket !== ws) return;
    socket = null;
    const ceiling = Math.min(30, firstDelay * 2 ** attempt);
    const delay = ceiling / 2 + Math.random() * ceiling / 2;
    attempt += 1;
    setStatus("reconnecting", "reconnecting");
    show("notice", [["", `disconnected (${event.code}); reconnecting in ${delay.toFixed(1)} s`]]);
    setTimeout(connect, delay * 1000);
  };
}

$("join").addEventListener("click", () => {
  const room = $("room").value.trim();
  if (room) join(room);
});

$("say").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value;
  const room = $("room").value.trim();
  if (!text) return;
  send({ type: "say", room, name: $("name").value.trim() || "guest", text });
  $("text").value = "";
});

if (params.get("name")) $("name").value = params.get("name");
if (params.get("room")) {
  $("room").value = params.get("room");
  rooms.set(params.get("room"), null);
}
connect();
