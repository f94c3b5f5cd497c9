"""WebRTC sessions: how many peers a server keeps in real time, and the latency through it.

For growing N, N peers on the client test host each send 48 kHz audio to a server on the server
test host (network namespaces made by ``tests/hosts/netns.py``; root and iproute2 needed) and
receive it back. Every second the sent audio carries a marker (10 ms of 1 kHz after silence);
the one-way latency through the server is the time from handing a marker's first sample to the
encoder to the arrival of the decoded frame in which the marker's onset appears (one clock, in the
same client process), so it includes both network hops, both jitter buffers, the codec and the
server. Servers, side by side in the same run:

- ``echo``: bare aiortc, the received track sent straight back, aiortc's jitter buffers on both
  ends (the baseline);
- ``pass``: the RemoteMedia server with a pass-through pipeline, adaptive jitter buffers;
- ``chain``: the RemoteMedia server with a realistic speech front end (mono, resample to
  16 kHz, gain; the output track resamples back to 48 kHz), adaptive jitter buffers;
- ``chain:wN`` (with ``--workers N``, or named in ``--modes``): ``chain`` with its sessions on
  N worker processes (``serve --workers N``); ``cpu`` then counts the front and its workers;
- ``pass-aiortc-codec``, ``chain-aiortc-codec`` (named in ``--modes``): those servers with
  ``--audio-codec aiortc`` (audio decoded on aiortc's decoder thread and encoded on its thread
  pool, as before the inline codec path);
- ``pass-inline``, ``chain-inline`` (named in ``--modes``): those servers with
  ``--audio-codec inline`` (aiortc's RTP path, Opus on the session's loop: the transport before
  the native one). ``pass`` and ``chain`` take the default, the native audio path.
- ``+levels`` after any of those (``chain+levels``): the peers take the session's ``level``
  messages every 100 ms and ``stats`` every second, as the page does for its meters and figures;
  otherwise they ask for none (they show neither, and bare aiortc sends none), which spares the
  server 11 data-channel messages a second per session.

The peers run in ``--clients`` processes on the same 2-core machine as the server, so past a few
sessions the whole machine (peers included) is what saturates; ``cpu`` shows the server's share.

A session keeps real time when it received at least 95 % of the audio it should have, saw every
marker, and its latency did not grow over the run. ``cpu`` is the server's cores in use (1.0 = one
core busy) in the steady state (from ``WARMUP_S`` after the peers start to a second before they
end: connecting a session is a cost per call, not per second); ``x echo`` is a server's CPU per session over bare aiortc's at the same N in the same
run; ``per core`` extrapolates sessions per core from CPU per session. ``--signal marker`` (the
default) sends digital silence between the markers, as a listening voice agent's peer does;
``--signal speech`` sends continuous speech-like sound (``stream.testing.speech_like``, peaks at
-24 dBFS, under the marker detector's threshold, over a -60 dBFS noise floor) between them, so
every frame is coded.
``--smoke`` runs one short round with N=2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

RATE = 48000
FRAME = 960  # 20 ms
MARK_EVERY = 50  # frames: one marker a second, so latencies below 1 s match unambiguously
MARK_FRAMES = 1  # the marker's length in frames (20 ms of tone, 10 ms faded)
REPO = Path(__file__).resolve().parents[1]


# -- the peer side (runs in client processes on the client host)
SPEECH_PEAK = 0.06  # the speech bed's peak: under the onset threshold (0.1) after any gain


def marker_frames(seconds: float, signal: str = "marker", seed: int = 0) -> Any:
    """20 ms mono frames: a 1 kHz burst every second over silence (``marker``) or over
    speech-like sound (``speech``), pts counted in samples."""
    from stream.frames import AudioFrame
    from stream.testing import speech_like

    n = int(seconds * 50)
    bed = np.zeros(n * FRAME, np.float32)
    if signal == "speech":
        speech = speech_like(n * FRAME / RATE, seed=seed, rate=RATE)
        floor = np.random.default_rng(seed).normal(0.0, 1e-3, speech.size)  # a room: -60 dBFS
        bed = (speech * SPEECH_PEAK / max(np.abs(speech).max(), 1e-9) + floor).astype(np.float32)
    t = np.arange(FRAME // 2) / RATE
    for i in range(n):
        block = bed[i * FRAME : (i + 1) * FRAME].copy()
        if i % MARK_EVERY == 0:
            block[: FRAME // 2] = 0.5 * np.sin(2 * np.pi * 1000 * t)
            block[FRAME // 2 :] = 0.0  # the onset detector wants quiet before the next burst
        yield AudioFrame(block[None, :], RATE, i * FRAME, Fraction(1, RATE))


class Probe:
    """One session's measurements: marker send times, onsets received, audio received."""

    def __init__(self) -> None:
        self.sent: list[float] = []
        self.arrived: list[float] = []
        self.received_s = 0.0
        self.quiet = 0  # samples of silence seen since the last onset
        self.first_arrival: float | None = None

    def on_sent(self, frame: Any, at: float) -> None:
        if frame.pts is not None and frame.pts % (FRAME * MARK_EVERY) == 0:
            self.sent.append(at)

    def on_frame(self, frame: Any) -> None:
        from stream.frames import AudioFrame

        if not isinstance(frame, AudioFrame):
            return
        now = time.perf_counter()
        self.first_arrival = self.first_arrival or now
        self.received_s += frame.duration
        x = np.abs(frame.samples[0])
        loud = np.flatnonzero(x > 0.1)
        if loud.size and self.quiet + int(loud[0]) > RATE // 10:
            self.arrived.append(now)
            self.quiet = frame.num_samples - int(loud[-1]) - 1
        elif loud.size:
            self.quiet = frame.num_samples - int(loud[-1]) - 1
        else:
            self.quiet += frame.num_samples


async def run_peers(
    url: str,
    sessions: int,
    seconds: float,
    jitter: int | None,
    signal: str = "marker",
    periods_ms: float = 0.0,
) -> list[Any]:
    from stream.transport.webrtc import Peer

    probes = [Probe() for _ in range(sessions)]
    peers = [
        Peer(
            url,
            marker_frames(seconds, signal, seed),
            probe.on_frame,
            jitter_depth=jitter,
            on_sent=probe.on_sent,
            connect_timeout=30,
            level_ms=periods_ms,
            stats_ms=periods_ms * 10,
        )
        for seed, probe in enumerate(probes)
    ]
    started = await asyncio.gather(*(p.start() for p in peers), return_exceptions=True)
    t0 = time.perf_counter()
    live = [p for p, s in zip(peers, started, strict=True) if not isinstance(s, BaseException)]
    await asyncio.gather(*(p.wait_sent(seconds + 30) for p in live), return_exceptions=True)
    await asyncio.sleep(0.5)
    await asyncio.gather(*(p.close() for p in peers), return_exceptions=True)
    out = []
    for probe, s in zip(probes, started, strict=True):
        out.append(
            {
                "error": str(s) if isinstance(s, BaseException) else None,
                "sent": probe.sent,
                "arrived": probe.arrived,
                "received_s": probe.received_s,
                "elapsed": time.perf_counter() - t0,
            }
        )
    return out


def client_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--sessions", type=int, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--jitter", default="3")
    p.add_argument("--signal", default="marker")
    p.add_argument("--level-ms", type=float, default=0.0)
    a = p.parse_args(argv)
    jitter = None if a.jitter == "aiortc" else int(a.jitter)
    rows = asyncio.run(run_peers(a.url, a.sessions, a.seconds, jitter, a.signal, a.level_ms))
    print(json.dumps(rows))
    return 0


# -- the baseline server: bare aiortc echo
def echo_main(argv: list[str]) -> int:
    from aiohttp import web
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    host, port = argv[0], int(argv[1])
    pcs: set[RTCPeerConnection] = set()

    async def offer(request: web.Request) -> web.Response:
        params = await request.json()
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pcs.add(pc)

        @pc.on("track")
        def on_track(track: Any) -> None:
            pc.addTrack(track)  # echo: aiortc's sender reads the received track

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await pc.close()
                pcs.discard(pc)

        await pc.setRemoteDescription(RTCSessionDescription(params["sdp"], params["type"]))
        await pc.setLocalDescription(await pc.createAnswer())
        local = pc.localDescription
        return web.json_response({"sdp": local.sdp, "type": local.type, "session": str(id(pc))})

    app = web.Application()
    app.router.add_post("/offer", offer)
    print(f"serving on http://{host}:{port}/", flush=True)
    web.run_app(app, host=host, port=port, print=None, access_log=None)
    return 0


# -- the driver
def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


def summarize(results: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    realtime = 0
    for r in results:
        if r["error"]:
            continue
        sent, arrived = r["sent"], r["arrived"]
        # each onset belongs to the last marker sent before it (markers are 1 s apart)
        matched = {}
        for a in arrived:
            before = [s for s in sent if s < a]
            if before:
                matched.setdefault(before[-1], a - before[-1])
        # steady state: not the first marker (cold start) nor the last (the stream's end)
        pairs = [matched[s] for s in sent[1:-1] if s in matched]
        slow = any(x > 0.9 for x in pairs)
        latencies.extend(pairs)
        third = max(1, len(pairs) // 3)
        growing = len(pairs) >= 6 and np.median(pairs[-third:]) - np.median(pairs[:third]) > 0.05
        complete = len(pairs) >= len(sent) - 3 and r["received_s"] >= 0.95 * seconds
        realtime += bool(complete and pairs and not growing and not slow)
    return {
        "realtime": realtime,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "markers": len(latencies),
    }


def start_server(hosts: Any, mode: str, manifest: Path) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if mode == "echo":
        argv = [sys.executable, __file__, "echo-server", hosts.server_ip, "8090"]
    else:
        argv = [sys.executable, "-m", "stream.transport", "serve", "--host", hosts.server_ip]
        argv += ["--port", "8090", "--max-sessions", "256", "--idle-timeout", "20"]
        base, _, workers = mode.partition(":w")
        if base.endswith("-aiortc-codec"):  # aiortc's decoder thread and encoder pool
            base = base.removesuffix("-aiortc-codec")
            argv += ["--audio-codec", "aiortc"]
        elif base.endswith("-inline"):  # aiortc's RTP, Opus on the session's loop
            base = base.removesuffix("-inline")
            argv += ["--audio-codec", "inline"]
        if base == "chain":
            argv += ["--pipeline", str(manifest)]
        if workers:
            argv += ["--workers", workers]
    proc = hosts.popen(
        "server", argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("serving on"):
        raise RuntimeError(f"{mode} server did not start: {line!r}")
    return proc, line.split()[2]


def cpu_seconds(pid: int) -> float:
    import psutil

    try:
        proc = psutil.Process(pid)
        total = sum(proc.cpu_times()[:2])
        for child in proc.children(recursive=True):
            total += sum(child.cpu_times()[:2])
        return total
    except psutil.Error:
        return 0.0


# Where a sampled frame's time goes, by the first matching marker in its file or function name
# (checked innermost frame first): the areas issue 13 names.
AREAS = (
    ("opus codec", ("codecs/opus", "opus_encode", "opus_decode", "libopus")),
    ("srtp", ("srtp", "pylibsrtp")),
    ("pyav frames/resampler", ("av/", "libav", "swr_", "libswresample")),
    ("jitter buffer", ("jitterbuffer", "jitter_buffer", "_jitter")),
    ("rtp/rtcp parse+build", ("aiortc/rtp.py", "rtcrtpreceiver", "rtcrtpsender")),
    ("ice/udp", ("aioice", "selector_events", "socket")),
    ("dtls", ("rtcdtlstransport", "ssl")),
    ("pipeline + engine", ("stream/pipeline", "stream/node", "_engine", "media_nodes", "kernel")),
    ("tracks + adapter", ("stream/transport/tracks", "audio_adapter")),
    ("asyncio loop", ("asyncio/",)),
    ("thread pool", ("concurrent/futures", "threading.py")),
)


# Leaf frames of a thread that waits (py-spy --nonblocking samples them as running): the event
# loop's poll, the thread pool's idle workers, condition waits.
IDLE = (
    "(idle)",
    "select (selectors.py",
    "_worker (concurrent/futures/thread.py",
    "Condition.wait (threading.py",
    "Event.wait (threading.py",
    "Thread.join",
)


def profile_server(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy sampling ``pid`` (and its worker processes) for ``seconds``, raw output to ``out``;
    None when py-spy is not installed (``pip install py-spy``)."""
    import shutil

    spy = shutil.which("py-spy")
    if spy is None:
        print("py-spy is not installed (pip install py-spy): no profile", file=sys.stderr)
        return None
    argv = [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200"]
    argv += ["--format", "raw", "--output", str(out), "--subprocesses", "--nonblocking"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize_profile(path: Path, top: int = 12) -> list[str]:
    """Self time per function and per area (``AREAS``) from py-spy's raw (collapsed) stacks."""
    by_function: dict[str, int] = {}
    by_area: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if any(mark in frames[-1] for mark in IDLE):
            continue
        total += count
        by_function[frames[-1]] = by_function.get(frames[-1], 0) + count
        area = "other"
        for frame in reversed(frames):
            low = frame.lower()
            hit = next((name for name, keys in AREAS if any(k in low for k in keys)), None)
            if hit is not None:
                area = hit
                break
        by_area[area] = by_area.get(area, 0) + count
    if not total:
        return ["(no samples)"]
    lines = [
        f"  {count / total:6.1%}  {name}"
        for name, count in sorted(by_area.items(), key=lambda x: -x[1])
    ]
    lines.append("  top functions (self time):")
    for name, count in sorted(by_function.items(), key=lambda x: -x[1])[:top]:
        lines.append(f"  {count / total:6.1%}  {name[:110]}")
    return lines


WARMUP_S = 4.0  # seconds from starting the peers to measuring the server's CPU


def round_trip(
    hosts: Any,
    mode: str,
    sessions: int,
    seconds: float,
    clients: int,
    manifest: Path,
    profile: Path | None = None,
    signal: str = "marker",
) -> dict[str, Any]:
    server, url = start_server(hosts, mode.removesuffix("+levels"), manifest)
    spy = None
    try:
        jitter = "aiortc" if mode == "echo" else "3"
        level_ms = "100" if mode.endswith("+levels") else "0"
        per = [sessions // clients + (i < sessions % clients) for i in range(clients)]
        procs = [
            hosts.popen(
                "client",
                [
                    sys.executable,
                    __file__,
                    "client",
                    "--url",
                    url,
                    "--sessions",
                    str(n),
                    "--seconds",
                    str(seconds),
                    "--jitter",
                    jitter,
                    "--signal",
                    signal,
                    "--level-ms",
                    level_ms,
                ],
                stdout=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
            for n in per
            if n
        ]
        if profile is not None:  # the middle of the run: sessions up, not yet ending
            spy = profile_server(server.pid, max(1.0, seconds - 4.0), profile)
        # CPU over the steady state: from WARMUP_S after the peers start (their processes up,
        # sessions connected) to a second before they end. Connecting a session (certificate,
        # DTLS handshake) is a cost per call, not per second; over the whole run it inflated the
        # N=1 rows (before 2026-12-03 the tables counted the whole run).
        warmup = min(WARMUP_S, seconds / 3)
        time.sleep(warmup)
        cpu0, t0 = cpu_seconds(server.pid), time.perf_counter()
        time.sleep(max(1.0, seconds - warmup - 1.0))
        cpu = (cpu_seconds(server.pid) - cpu0) / (time.perf_counter() - t0)
        results: list[dict[str, Any]] = []
        for proc in procs:
            out, _ = proc.communicate(timeout=seconds + 120)
            results.extend(json.loads(out))
    finally:
        if spy is not None:
            spy.wait(seconds + 60)
        server.terminate()
        server.wait(20)
    return {"mode": mode, "sessions": sessions, "cpu": cpu, **summarize(results, seconds)}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        return client_main(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "echo-server":
        return echo_main(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="one short round, N=2")
    p.add_argument("--sessions", default="1,4,8,16", help="N values (comma separated)")
    p.add_argument("--seconds", type=float, default=10.0, help="audio per session")
    p.add_argument("--clients", type=int, default=2, help="client processes")
    p.add_argument("--modes", default="echo,chain-inline,chain")
    p.add_argument(
        "--workers", type=int, default=0, help="also run chain on N worker processes (chain:wN)"
    )
    p.add_argument("--json", type=Path, help="also write the rows here")
    p.add_argument(
        "--signal",
        choices=("marker", "speech"),
        default="marker",
        help="between the markers: digital silence, or speech-like sound",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="sample each server with py-spy and print where its time goes",
    )
    a = p.parse_args()
    sys.path.insert(0, str(REPO / "tests"))  # the test hosts live with the tests
    from hosts.netns import netns_unavailable, test_hosts

    reason = netns_unavailable()
    if reason:
        print(f"skipped: {reason}")
        return 0
    counts = [2] if a.smoke else [int(n) for n in a.sessions.split(",")]
    seconds = 6.0 if a.smoke else a.seconds
    modes = a.modes.split(",")
    if a.workers and f"chain:w{a.workers}" not in modes:
        modes.append(f"chain:w{a.workers}")
    rows = []
    print(
        f"{'mode':<13} {'N':>3} {'real time':>9} {'p50 ms':>7} {'p99 ms':>7} {'cpu':>5} "
        f"{'cpu/session':>11} {'x echo':>6} {'per core':>8}"
    )
    with test_hosts("rb") as hosts:
        manifest = Path(f"/tmp/webrtc-bench-{os.getpid()}.json")
        manifest.write_text(
            json.dumps(
                {
                    "version": 1,
                    "name": "chain",
                    "nodes": [
                        {"type": "ChannelMix", "params": {"channels": 1}},
                        {"type": "Resample", "params": {"sample_rate": 16000}},
                        {"type": "Gain", "params": {"gain_db": -3}},
                    ],
                }
            )
        )
        try:
            for n in counts:
                for mode in modes:
                    profile = Path(f"/tmp/webrtc-bench-{os.getpid()}-{mode}-{n}.txt")
                    row = round_trip(
                        hosts,
                        mode,
                        n,
                        seconds,
                        min(a.clients, n),
                        manifest,
                        profile if a.profile else None,
                        a.signal,
                    )
                    per_session = row["cpu"] / n
                    bare = next(
                        (r for r in rows if r["mode"] == "echo" and r["sessions"] == n), None
                    )
                    if mode == "echo":
                        bare = row
                    row["x_echo"] = per_session / (bare["cpu"] / n) if bare else math.nan
                    row["per_core"] = 1 / per_session if per_session > 0 else math.inf
                    rows.append(row)
                    print(
                        f"{mode:<13} {n:>3} {row['realtime']:>5}/{n:<3} {row['p50_ms']:>7.1f} "
                        f"{row['p99_ms']:>7.1f} {row['cpu']:>5.2f} {per_session:>11.3f} "
                        f"{row['x_echo']:>6.2f} {row['per_core']:>8.0f}",
                        flush=True,
                    )
                    if a.profile and profile.exists():
                        print(f"  profile of {mode} at N={n} (py-spy, share of busy samples):")
                        print("\n".join(summarize_profile(profile)), flush=True)
                        profile.unlink()
        finally:
            manifest.unlink(missing_ok=True)
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
