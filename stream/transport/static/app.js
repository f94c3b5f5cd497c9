// RemoteMedia browser peer: microphone (and optionally camera) -> server pipeline -> playback.
// Plain JavaScript, no build. window.remotemedia exposes the state for scripts and tests.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
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
      log("error: " + msg.message, "error");
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
  $("connect").disabled = true;
  state.error = null;
  try {
    setStatus("starting");
    const wantVideo = $("camera").checked;
    state.stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
      video: wantVideo,
    });
    const headers = { "Content-Type": "application/json" };
    const token = $("token").value.trim();
    if (token) headers.Authorization = "Bearer " + token;
    state.closeReason = null;
    state.iceServers = await iceServers(headers);
    const pc = new RTCPeerConnection({ iceServers: state.iceServers });
    state.pc = pc;
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
    pc.addEventListener("connectionstatechange", () => {
      const s = pc.connectionState;
      setStatus(s, s === "connected" ? "connected" : s === "failed" ? "failed" : "");
      log("connection " + s);
      if (s === "failed" || s === "closed") disconnect();
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
    if (!resp.ok) throw new Error("HTTP " + resp.status + ": " + (body.error || resp.statusText));
    state.session = body.session;
    await pc.setRemoteDescription({ type: body.type, sdp: body.sdp });
    $("disconnect").disabled = false;
    $("pause").disabled = false;
    state.statsTimer = setInterval(updateStats, 1000);
  } catch (err) {
    state.error = String(err.message || err);
    log(state.error, "error");
    setStatus("failed", "failed");
    disconnect();
  }
}

function disconnect() {
  clearInterval(state.statsTimer);
  if (state.pc) state.pc.close();
  if (state.stream) state.stream.getTracks().forEach((t) => t.stop());
  state.pc = state.channel = state.stream = null;
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
