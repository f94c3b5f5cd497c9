// RemoteMedia browser peer: microphone (and optionally camera) -> server pipeline -> playback.
// Over WebRTC, or over the plain PCM WebSocket (/ws, `serve --calls`) where WebRTC is blocked:
// the transport is "auto" (WebRTC, then /ws when the connection fails or is not up within
// RTC_DEADLINE_MS), "webrtc" or "ws", from the select or `?transport=`.
// Plain JavaScript, no build. window.remotemedia exposes the state for scripts and tests.
"use strict";

const RTC_DEADLINE_MS = 10000; // auto: WebRTC must connect within this, else /ws
const FRAME_MS = 20;           // /ws: microphone frames sent
const PLAYOUT_MS = 60;         // /ws jitter buffer: how far ahead of the clock playback starts
const MAX_PLAYOUT_MS = 400;    // /ws: a frame that would be queued further ahead is dropped
const RECORD_S = 30;           // /ws: the received audio kept in state.received

const $ = (id) => document.getElementById(id);
const state = {
  attempt: 0,  // counts connect() calls and disconnects: a stale attempt stops where it is
  transport: null,  // the one in use: "webrtc" or "ws"
  pc: null,
  channel: null,
  stream: null,
  session: null,
  connection: "idle",
  paused: false,
  messages: [],     // every data-channel message received, newest last (bounded)
  levels: null,     // last {input, output} levels from the server
  stats: {},        // last connection stats shown
  iceServers: [],   // what the server's /config gave (STUN/TURN, with credentials)
  candidates: null, // {local, remote} candidate types of the selected pair ("host", "relay"...)
  closeReason: null,// why the server closed the session, when it said so
  iceErrors: [],    // STUN/TURN servers that refused or did not answer (icecandidateerror)
  error: null,
  ws: null,         // /ws: the socket, its AudioContext and player
  audio: null,
  player: null,
  received: [],     // /ws: the audio received (Float32Array blocks, the last RECORD_S seconds)
  rate: null,       // /ws: the sample rate both ways (the AudioContext's)
};
window.remotemedia = state;

function setStatus(text, cls) {
  state.connection = text;
  const el = $("status");
  el.textContent = text;
  el.className = "status " + (cls || "");
}

function log(text, cls) {
  const item = document.createElement("li");
  item.textContent = new Date().toLocaleTimeString() + "  " + text;
  if (cls) item.className = cls;
  const list = $("log");
  list.appendChild(item);
  while (list.children.length > 300) list.removeChild(list.firstChild);
  list.scrollTop = list.scrollHeight;
}

function send(message) {
  if (state.channel && state.channel.readyState === "open") {
    state.channel.send(JSON.stringify(message));
  }
}

function showLevel(which, level) {
  const db = level && level.rms_db !== null ? level.rms_db : -60;
  $("level-" + which).value = Math.max(-60, db);
  $("level-" + which + "-db").textContent = level && level.rms_db !== null ? db.toFixed(1) + " dB" : "-";
}

function showStages(stages) {
  const form = $("stages");
  form.textContent = "";
  for (const stage of stages) {
    const row = document.createElement("div");
    row.innerHTML = "<strong></strong> <small></small>";
    row.querySelector("strong").textContent = stage.name;
    row.querySelector("small").textContent = stage.type;
    form.appendChild(row);
    for (const param of stage.settable) {
      const value = stage.params[param];
      if (typeof value !== "number") continue;
      const label = document.createElement("label");
      label.textContent = param + " ";
      const input = document.createElement("input");
      input.type = "number";
      input.step = "any";
      input.value = value;
      input.addEventListener("change", () =>
        send({ type: "set", stage: stage.name, param, value: Number(input.value) }));
      label.appendChild(input);
      form.appendChild(label);
    }
  }
}

function onMessage(event) {
  let msg;
  try {
    msg = JSON.parse(event.data);
  } catch (e) {
    log("unreadable message: " + event.data, "error");
    return;
  }
  state.messages.push(msg);
  if (state.messages.length > 2000) state.messages.splice(0, state.messages.length - 2000);
  switch (msg.type) {
    case "level":
      state.levels = msg;
      showLevel("in", msg.input);
      showLevel("out", msg.output);
      break;
    case "stats":
      state.serverStats = msg;
      break;
    case "hello":
      if (msg.call) {  // /ws: the call is up
        state.session = msg.call;
        setStatus("connected", "connected");
        log("call " + msg.call + " over the WebSocket: " + msg.rate + " Hz " + msg.format);
        break;
      }
      state.session = msg.session;
      showStages(msg.stages);
      log("session " + msg.session + ": " + msg.stages.map((s) => s.name).join(" -> "));
      break;
    case "state":
      state.paused = msg.paused;
      $("pause").textContent = msg.paused ? "Resume" : "Pause";
      log(msg.paused ? "paused" : "resumed");
      break;
    case "error":
      log("error: " + (msg.message || msg.error), "error");
      break;
    case "clear":  // /ws barge-in: drop what is queued for playback
      if (state.player) state.player.clear();
      log("clear");
      break;
    case "draining":
      log("the server is shutting down: the session may run on for " + msg.deadline_s + " s");
      break;
    case "close":
      state.closeReason = msg.reason;
      log("the server closed the session: " + msg.reason, "error");
      disconnect();
      setStatus("closed by the server");
      break;
    case "event":
      log(msg.stage + ": " + msg.kind + (msg.time !== null ? " at " + msg.time.toFixed(2) + " s" : "")
        + (Object.keys(msg.payload || {}).length ? " " + JSON.stringify(msg.payload) : ""));
      break;
    default:
      log(msg.type + " " + JSON.stringify(msg));
  }
}

async function gatheringComplete(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return;
  await new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    pc.addEventListener("icegatheringstatechange", () => {
      if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
    });
  });
}

async function updateStats() {
  if (state.transport === "ws") return showWsStats();
  const pc = state.pc;
  if (!pc) return;
  const report = await pc.getStats();
  const rows = {};
  report.forEach((s) => {
    if (s.type === "transport" && s.selectedCandidatePairId) {
      const pair = report.get(s.selectedCandidatePairId);
      const local = pair && report.get(pair.localCandidateId);
      const remote = pair && report.get(pair.remoteCandidateId);
      if (local && remote) {
        state.candidates = { local: local.candidateType, remote: remote.candidateType };
        rows["candidates"] = local.candidateType + " -> " + remote.candidateType;
      }
    }
    if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") {
      if (s.currentRoundTripTime !== undefined) rows["round trip"] = (s.currentRoundTripTime * 1000).toFixed(1) + " ms";
    } else if (s.type === "outbound-rtp" && s.kind === "audio") {
      rows["audio packets sent"] = s.packetsSent;
      rows["audio kB sent"] = (s.bytesSent / 1000).toFixed(1);
    } else if (s.type === "inbound-rtp" && s.kind === "audio") {
      rows["audio packets received"] = s.packetsReceived;
      rows["audio packets lost"] = s.packetsLost;
      if (s.jitter !== undefined) rows["audio jitter"] = (s.jitter * 1000).toFixed(1) + " ms";
      if (s.jitterBufferEmittedCount) {
        rows["jitter buffer delay"] = (1000 * s.jitterBufferDelay / s.jitterBufferEmittedCount).toFixed(1) + " ms";
      }
    } else if (s.type === "inbound-rtp" && s.kind === "video") {
      rows["video frames received"] = s.framesDecoded;
    }
  });
  const server = state.serverStats;
  if (server) {
    rows["server frames in/out"] = server.frames_in + " / " + server.frames_out;
    rows["server underruns"] = server.audio_underruns;
  }
  showRows(rows);
}

function showRows(rows) {
  state.stats = rows;
  const body = $("stats").tBodies[0];
  body.textContent = "";
  for (const [name, value] of Object.entries(rows)) {
    const tr = body.insertRow();
    tr.insertCell().textContent = name;
    tr.insertCell().textContent = value;
  }
}

// The STUN/TURN servers the server hands out (TURN credentials made for this request).
async function iceServers(headers) {
  const resp = await fetch("config", { headers });
  if (resp.status === 404) return [];  // a server without /config
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error("config: HTTP " + resp.status + ": " + (body.error || resp.statusText));
  return Array.isArray(body.iceServers) ? body.iceServers : [];
}

async function connect() {
  const attempt = ++state.attempt;
  $("connect").disabled = true;
  $("disconnect").disabled = false;  // an attempt can be given up, too
  state.error = null;
  state.closeReason = null;
  const mode = $("transport").value;
  const token = $("token").value.trim();
  try {
    setStatus("starting");
    state.stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      video: $("camera").checked,
    });
    if (mode !== "ws") {
      try {
        await connectRtc(token, mode === "auto" ? RTC_DEADLINE_MS : 0);
        return;
      } catch (err) {
        if (attempt !== state.attempt) return;  // disconnected meanwhile: no fallback
        if (mode === "webrtc" || err.refused) throw err;
        log("WebRTC: " + (err.message || err) + "; falling back to the WebSocket", "error");
        closeRtc();
      }
    }
    await connectWs(token);
  } catch (err) {
    if (attempt !== state.attempt) return;
    state.error = String(err.message || err);
    log(state.error, "error");
    setStatus("failed", "failed");
    disconnect();
  }
}

// WebRTC. With a deadline (auto), resolves once connected and throws when the connection
// fails or is not up in time; without, resolves once the answer is set.
async function connectRtc(token, deadlineMs) {
  const headers = { "Content-Type": "application/json" };
  if (token) headers.Authorization = "Bearer " + token;
  state.iceServers = await iceServers(headers);
  const pc = new RTCPeerConnection({ iceServers: state.iceServers });
  state.pc = pc;
  state.transport = deadlineMs ? null : "webrtc";
  state.iceErrors = [];
  pc.addEventListener("icecandidateerror", (ev) => {
    // e.g. 401 from a TURN server given wrong or expired credentials
    state.iceErrors.push({ url: ev.url, errorCode: ev.errorCode, errorText: ev.errorText });
    log("ICE server " + ev.url + ": " + ev.errorCode + " " + ev.errorText, "error");
  });
  for (const track of state.stream.getTracks()) pc.addTrack(track, state.stream);
  pc.addEventListener("track", (ev) => {
    const media = new MediaStream([ev.track]);
    if (ev.track.kind === "audio") {
      $("remote-audio").srcObject = media;
    } else {
      const video = $("remote-video");
      video.hidden = false;
      video.srcObject = media;
    }
  });
  const up = new Promise((resolve, reject) => {
    const timer = deadlineMs && setTimeout(
      () => reject(new Error("not connected within " + deadlineMs / 1000 + " s")), deadlineMs);
    pc.addEventListener("connectionstatechange", () => {
      const s = pc.connectionState;
      if (s === "connected") { clearTimeout(timer); resolve(); }
      if (s === "failed" || s === "closed") { clearTimeout(timer); reject(new Error("connection " + s)); }
    });
  });
  up.catch(() => {});  // without a deadline, failures are handled below
  pc.addEventListener("connectionstatechange", () => {
    const s = pc.connectionState;
    if (state.pc !== pc) return;
    setStatus(s, s === "connected" ? "connected" : s === "failed" ? "failed" : "");
    log("connection " + s);
    // an auto attempt is not the live transport yet: connect() decides what a failure means
    if ((s === "failed" || s === "closed") && state.transport) disconnect();
  });
  const channel = pc.createDataChannel("control");
  state.channel = channel;
  channel.addEventListener("message", onMessage);
  channel.addEventListener("open", () => log("data channel open"));

  await pc.setLocalDescription(await pc.createOffer());
  await gatheringComplete(pc, 3000);
  setStatus("signaling");
  const resp = await fetch("offer", {
    method: "POST",
    headers,
    body: JSON.stringify({ sdp: pc.localDescription.sdp, type: pc.localDescription.type }),
  });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const err = new Error("HTTP " + resp.status + ": " + (body.error || resp.statusText));
    err.refused = true;  // the server said no: no fallback
    throw err;
  }
  state.session = body.session;
  await pc.setRemoteDescription({ type: body.type, sdp: body.sdp });
  if (deadlineMs) {
    await up;
    state.transport = "webrtc";
  }
  $("disconnect").disabled = false;
  $("pause").disabled = false;
  state.statsTimer = setInterval(updateStats, 1000);
}

function closeRtc() {
  if (state.pc) state.pc.close();
  state.pc = state.channel = null;
}

// The plain PCM WebSocket (/ws): a JSON hello, then s16le mono frames both ways, JSON beside.
function wsUrl(token) {
  const url = new URL("ws", location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  if (token) url.searchParams.set("token", token);  // a browser's WebSocket sends no headers
  return url.href;
}

// A small jitter buffer: each received frame is scheduled on the AudioContext's clock right
// after the previous one, starting PLAYOUT_MS ahead; an underrun starts again PLAYOUT_MS ahead.
class Player {
  constructor(ctx) {
    this.ctx = ctx;
    this.next = 0;
    this.sources = new Set();
    this.counts = { frames: 0, underruns: 0, dropped: 0 };
  }

  play(samples, rate) {
    const now = this.ctx.currentTime;
    if (this.next < now) {
      if (this.counts.frames) this.counts.underruns++;
      this.next = now + PLAYOUT_MS / 1000;
    }
    if (this.next - now > MAX_PLAYOUT_MS / 1000) { this.counts.dropped++; return; }
    const buffer = this.ctx.createBuffer(1, samples.length, rate);
    buffer.copyToChannel(samples, 0);
    const source = this.ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(this.ctx.destination);
    source.onended = () => this.sources.delete(source);
    source.start(this.next);
    this.sources.add(source);
    this.next += buffer.duration;
    this.counts.frames++;
  }

  clear() {
    for (const source of this.sources) source.stop();
    this.sources.clear();
    this.next = 0;
  }

  bufferedMs() {
    return Math.max(0, this.next - this.ctx.currentTime) * 1000;
  }
}

const meters = { in: [0, 0], out: [0, 0] };  // [sum of squares, samples] since the last show

function measure(which, x) {
  const m = meters[which];
  for (let i = 0; i < x.length; i++) m[0] += x[i] * x[i];
  m[1] += x.length;
}

function showWsLevels() {
  const level = (m) => ({ rms_db: m[1] ? 10 * Math.log10(m[0] / m[1] + 1e-12) : null });
  state.levels = { input: level(meters.in), output: level(meters.out) };
  showLevel("in", state.levels.input);
  showLevel("out", state.levels.output);
  meters.in = [0, 0];
  meters.out = [0, 0];
}

function showWsStats() {
  const p = state.player;
  showRows({
    "transport": "WebSocket " + (state.ws ? state.ws.url.split("?")[0] : ""),
    "audio frames played": p ? p.counts.frames : 0,
    "playout buffer": p ? p.bufferedMs().toFixed(0) + " ms" : "-",
    "playout underruns": p ? p.counts.underruns : 0,
    "frames dropped (late)": p ? p.counts.dropped : 0,
  });
}

async function connectWs(token) {
  state.transport = "ws";
  state.received = [];
  setStatus("connecting (WebSocket)");
  if ($("camera").checked) log("the WebSocket carries audio only");
  let ctx = new AudioContext();
  if (ctx.sampleRate > 48000) {  // /ws takes 8000..48000 Hz
    await ctx.close();
    ctx = new AudioContext({ sampleRate: 48000 });
  }
  state.audio = ctx;
  const rate = (state.rate = ctx.sampleRate);
  await ctx.audioWorklet.addModule("static/pcm-worklet.js");
  const capture = new AudioWorkletNode(ctx, "pcm-capture", {
    numberOfOutputs: 0,
    processorOptions: { frames: Math.round((rate * FRAME_MS) / 1000) },
  });
  const player = (state.player = new Player(ctx));
  const ws = (state.ws = new WebSocket(wsUrl(token)));
  ws.binaryType = "arraybuffer";
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = () => reject(new Error("the WebSocket " + wsUrl("") + " did not open"
      + " (refused: a wrong token, or a server without --calls)"));
  });
  ws.onerror = null;
  ws.onclose = (ev) => {
    if (state.ws !== ws) return;  // we closed it
    log("the WebSocket closed (" + ev.code + (ev.reason ? " " + ev.reason : "") + ")", "error");
    disconnect();
    setStatus(state.closeReason ? "closed by the server" : "closed");
  };
  ws.onmessage = (ev) => {
    if (typeof ev.data === "string") return onMessage(ev);
    const pcm = new Int16Array(ev.data);  // s16le: every browser's byte order is little-endian
    const x = new Float32Array(pcm.length);
    for (let i = 0; i < pcm.length; i++) x[i] = pcm[i] / 32768;
    measure("out", x);
    state.received.push(x);
    if (state.received.length > (RECORD_S * 1000) / FRAME_MS) state.received.shift();
    player.play(x, rate);
  };
  ws.send(JSON.stringify({ type: "hello", rate, channels: 1, format: "s16le" }));
  capture.port.onmessage = (ev) => {
    const x = ev.data;
    measure("in", x);
    if (ws.readyState !== WebSocket.OPEN) return;
    const pcm = new Int16Array(x.length);
    for (let i = 0; i < x.length; i++) pcm[i] = Math.max(-32768, Math.min(32767, Math.round(x[i] * 32768)));
    ws.send(pcm.buffer);
  };
  ctx.createMediaStreamSource(new MediaStream(state.stream.getAudioTracks())).connect(capture);
  await ctx.resume();
  $("disconnect").disabled = false;
  state.statsTimer = setInterval(updateStats, 1000);
  state.levelTimer = setInterval(showWsLevels, 500);
}

function closeWs() {
  const ws = state.ws;
  state.ws = null;
  if (ws && ws.readyState === WebSocket.OPEN) ws.send('{"type":"stop"}');
  if (ws) ws.close();
  if (state.player) state.player.clear();
  if (state.audio) state.audio.close();
  state.audio = state.player = null;
}

function disconnect() {
  state.attempt++;
  clearInterval(state.statsTimer);
  clearInterval(state.levelTimer);
  closeRtc();
  closeWs();
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  state.stream = null;
  state.transport = null;
  $("connect").disabled = false;
  $("disconnect").disabled = true;
  $("pause").disabled = true;
  if (state.connection !== "failed") setStatus("idle");
}

$("connect").addEventListener("click", connect);
$("disconnect").addEventListener("click", disconnect);
$("pause").addEventListener("click", () => send({ type: state.paused ? "resume" : "pause" }));
const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromHash) $("token").value = fromHash;
const asked = new URLSearchParams(location.search).get("transport");
if (["auto", "webrtc", "ws"].includes(asked)) $("transport").value = asked;
