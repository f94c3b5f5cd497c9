"""Phone calls per core against WebRTC sessions per core: the same pipeline, the same server, one run.

For each N, a ``python -m stream.transport serve --calls --pipeline M`` process (M: ``Gain``
-6 dB) on the server test host (network namespaces made by ``tests/hosts/netns.py``; root and
iproute2 needed) carries, in two rounds, each with a fresh server:

- ``calls``: N callers speaking Twilio's Media Streams protocol to ``/twilio`` from
  ``--clients`` processes on the client host: 8 kHz mu-law in 20 ms chunks paced in real time,
  the server's audio back on the same socket;
- ``webrtc``: N WebRTC peers (``benchmarks/webrtc_sessions.py``'s client mode: 48 kHz Opus,
  adaptive jitter buffers) against the same command.

Every second the sent audio carries a marker (10 ms of 1 kHz after silence); the one-way latency
is the time from sending a marker's chunk to the arrival of the chunk in which its onset comes
back (one clock, in the caller's process): both network hops and, for a call, the server's
playout buffer and outbound pacer; for a peer, Opus and both jitter buffers.

A ``bursts`` row runs ``--burst-calls`` callers that send 200 ms at a time (ten chunks in one
go, as a TCP feed can bring them). Its latency is counted from the moment a marker's chunk was
due (when a steady caller would have sent it), so it includes the 0-180 ms the caller held it;
``playout`` is what the server's playout buffer added (arrival to hand-over, from each call's
counters in ``/status``, read before the callers stop).

A call or session keeps real time when at least 95 % of the audio it sent came back, every
marker after the first came back (a WebRTC peer loses its first 20-60 ms to the connection's
start, a caller does not), none later than 0.9 s, and the latency did not grow over the run. ``cpu`` is
the server process's cores in use over the round (1.0 = one core busy); ``per core`` is N / cpu,
the calls (sessions) one core would carry at that cost. The peers and callers run on the same
machine as the server, so past a few sessions the whole machine is what saturates.

    sudo python benchmarks/calls_bench.py                 # N = 4, 8, 16, 10 s each
    sudo python benchmarks/calls_bench.py --smoke         # N = 2, 4 s: proves it runs (CI)

Exits 1 when a call or session failed or no marker came back at all (the path is broken);
without root or ``ip netns`` it prints why and exits 0, as the other test-host benchmarks do.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

RATE = 8000
CHUNK = 160  # 20 ms
MARK_EVERY = 50  # chunks: one marker a second
PORT = 8090
HERE = Path(__file__).resolve().parent
REPO = HERE.parent


# -- the caller side (runs in client processes on the client host)
def chunk_samples(i: int) -> np.ndarray:
    """Chunk ``i`` of the caller's audio: silence, with 10 ms of 1 kHz at 0.5 every second."""
    x = np.zeros(CHUNK, np.float32)
    if i % MARK_EVERY == 0:
        t = np.arange(CHUNK // 2) / RATE
        x[: CHUNK // 2] = 0.5 * np.sin(2 * np.pi * 1000 * t)
    return x


class Onsets:
    """Marker onsets in the audio received: loud after at least 100 ms of quiet."""

    def __init__(self) -> None:
        self.arrived: list[float] = []
        self.received_s = 0.0
        self.quiet = RATE  # samples of quiet since the last loud one

    def feed(self, x: np.ndarray, now: float) -> None:
        self.received_s += x.shape[0] / RATE
        loud = np.flatnonzero(np.abs(x) > 0.1)
        if loud.size and self.quiet + int(loud[0]) > RATE // 10:
            self.arrived.append(now)
        if loud.size:
            self.quiet = x.shape[0] - int(loud[-1]) - 1
        else:
            self.quiet += x.shape[0]


async def twilio_caller(
    http: Any, url: str, sid: str, seconds: float, burst: int, sent_all: asyncio.Event,
    release: asyncio.Event,
) -> dict[str, Any]:  # fmt: skip
    """One call: ``seconds`` of marker audio to ``url`` in bursts of ``burst`` chunks."""
    import aiohttp

    from stream.kernels.g711 import decode_float, encode_float

    got = Onsets()
    sent: list[float] = []
    error: str | None = None
    t0 = time.perf_counter()

    async def receive(ws: Any) -> None:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if data.get("event") == "media":
                raw = base64.b64decode(data["media"]["payload"])
                got.feed(decode_float(np.frombuffer(raw, np.uint8)), time.perf_counter())

    def message(event: str, **body: Any) -> str:
        return json.dumps({"event": event, "streamSid": sid, **body})

    try:
        async with http.ws_connect(url) as ws:
            await ws.send_str(json.dumps({"event": "connected", "protocol": "Call"}))
            fmt = {"encoding": "audio/x-mulaw", "sampleRate": RATE, "channels": 1}
            start = {"streamSid": sid, "callSid": "CA" + sid, "mediaFormat": fmt}
            await ws.send_str(message("start", start=start))
            receiver = asyncio.create_task(receive(ws))
            t0 = time.perf_counter()
            n = int(seconds * 1000 / 20)
            for first in range(0, n, burst):
                last = min(n, first + burst)
                due = t0 + last * CHUNK / RATE  # the burst's last chunk is complete then
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                for i in range(first, last):
                    payload = base64.b64encode(encode_float(chunk_samples(i)).tobytes()).decode()
                    media = {"chunk": str(i + 1), "timestamp": str(i * 20), "payload": payload}
                    await ws.send_str(message("media", media=media))
                    if i % MARK_EVERY == 0:  # steady: when sent; bursts: when it was due
                        sent.append(time.perf_counter() if burst == 1 else t0 + (i + 1) * 0.02)
            sent_all.set()
            await release.wait()
            await asyncio.wait({receiver}, timeout=1.5)  # the processed audio on its way
            if not ws.closed:
                await ws.send_str(message("stop", stop={}))
            await asyncio.wait({receiver}, timeout=10)
            receiver.cancel()
    except Exception as exc:  # reported per call; the round goes on
        error = f"{type(exc).__name__}: {exc}"
    finally:
        sent_all.set()
    return {
        "error": error,
        "stream": sid,
        "sent": sent,
        "arrived": got.arrived,
        "received_s": got.received_s,
        "elapsed": time.perf_counter() - t0,
    }


async def run_callers(url: str, calls: int, seconds: float, burst: int) -> list[dict[str, Any]]:
    import aiohttp

    ids = [f"MZ{os.getpid()}x{k}" for k in range(calls)]
    sent_all = [asyncio.Event() for _ in ids]
    release = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        tasks = [
            asyncio.create_task(twilio_caller(http, url, sid, seconds, burst, done, release))
            for sid, done in zip(ids, sent_all, strict=True)
        ]
        await asyncio.gather(*(e.wait() for e in sent_all))
        # each call's playout counters, while the calls are live
        status_url = url.replace("ws://", "http://").rsplit("/", 1)[0] + "/status"
        playout: dict[str, Any] = {}
        try:
            async with http.get(status_url) as resp:
                status = await resp.json()
            for c in status.get("calls", {}).get("list", []):
                playout[c["stream"]] = c["playout"]
        except (aiohttp.ClientError, ValueError) as exc:
            print(f"no /status: {exc}", file=sys.stderr)
        release.set()
        results = await asyncio.gather(*tasks)
    for r in results:
        r["playout"] = playout.get(r["stream"])
    return list(results)


def caller_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--calls", type=int, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--burst", type=int, default=1)
    a = p.parse_args(argv)
    print(json.dumps(asyncio.run(run_callers(a.url, a.calls, a.seconds, a.burst))))
    return 0


# -- the driver
def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


def summarize(results: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    """Real time kept (see the module docstring), latency p50/p99 over the steady state, and
    the server's playout delay p50/p99 (the median over calls of each call's figure)."""
    latencies: list[float] = []
    realtime = 0
    errors = [r["error"] for r in results if r["error"]]
    p50s = [r["playout"]["delay_ms_p50"] for r in results if r.get("playout")]
    p99s = [r["playout"]["delay_ms_p99"] for r in results if r.get("playout")]
    for r in results:
        if r["error"]:
            continue
        sent, arrived = r["sent"], r["arrived"]
        matched: dict[float, float] = {}
        for a in arrived:  # each onset belongs to the last marker sent before it (1 s apart)
            before = [s for s in sent if s < a]
            if before:
                matched.setdefault(before[-1], a - before[-1])
        every = len(sent) > 1 and all(s in matched for s in sent[1:])  # a peer loses the 1st
        pairs = [matched[s] for s in sent[1:-1] if s in matched]  # not the cold start nor end
        latencies.extend(pairs)
        third = max(1, len(pairs) // 3)
        growing = len(pairs) >= 6 and np.median(pairs[-third:]) - np.median(pairs[:third]) > 0.05
        slow = any(x > 0.9 for x in matched.values())
        enough = r["received_s"] >= 0.95 * seconds
        realtime += bool(every and enough and not growing and not slow)
    return {
        "realtime": realtime,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "playout_p50_ms": float(np.median([x for x in p50s if x is not None] or [math.nan])),
        "playout_p99_ms": float(np.median([x for x in p99s if x is not None] or [math.nan])),
        "errors": errors[:3],
    }


def start_server(hosts: Any, manifest: Path) -> tuple[subprocess.Popen[str], str]:
    argv = [sys.executable, "-m", "stream.transport", "serve", "--host", hosts.server_ip]
    argv += ["--port", str(PORT), "--max-sessions", "256", "--max-calls", "256"]
    argv += ["--idle-timeout", "20", "--pipeline", str(manifest), "--calls"]
    proc = hosts.popen(
        "server",
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("serving on"):
        raise RuntimeError(f"the server did not start: {line!r}")
    return proc, line.split()[2]


def round_trip(
    hosts: Any, kind: str, n: int, seconds: float, clients: int, manifest: Path, burst: int = 1
) -> dict[str, Any]:
    """One round: a fresh server, ``n`` calls (``kind`` "calls"/"bursts") or peers ("webrtc")."""
    from webrtc_sessions import cpu_seconds

    server, url = start_server(hosts, manifest)
    try:
        per = [n // clients + (i < n % clients) for i in range(clients)]
        if kind == "webrtc":
            script = HERE / "webrtc_sessions.py"
            args = ["client", "--url", url, "--seconds", str(seconds), "--jitter", "3"]
            count = "--sessions"
        else:
            script = Path(__file__).resolve()
            ws_url = url.replace("http://", "ws://").rstrip("/") + "/twilio"
            args = ["caller", "--url", ws_url, "--seconds", str(seconds), "--burst", str(burst)]
            count = "--calls"
        cpu0, t0 = cpu_seconds(server.pid), time.perf_counter()
        procs = [
            hosts.popen(
                "client",
                [sys.executable, str(script), *args, count, str(k)],
                stdout=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
            for k in per
            if k
        ]
        results: list[dict[str, Any]] = []
        for proc in procs:
            out, _ = proc.communicate(timeout=seconds + 120)
            results.extend(json.loads(out))
        cpu = (cpu_seconds(server.pid) - cpu0) / (time.perf_counter() - t0)
    finally:
        server.terminate()
        server.wait(20)
    for r in results:
        r.setdefault("playout", None)
    return {"kind": kind, "n": n, "cpu": cpu, **summarize(results, seconds)}


def fmt(x: float, spec: str = ".0f") -> str:
    return "-" if math.isnan(x) else format(x, spec)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "caller":
        return caller_main(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="one short round, N=2")
    p.add_argument("--calls", default="4,8,16", help="N values (comma separated)")
    p.add_argument("--seconds", type=float, default=10.0, help="audio per call or session")
    p.add_argument("--clients", type=int, default=2, help="client processes")
    p.add_argument("--burst-calls", type=int, default=8, help="callers in the bursts row")
    p.add_argument("--json", type=Path, help="also write the rows here")
    a = p.parse_args()
    sys.path.insert(0, str(REPO / "tests"))  # the test hosts live with the tests
    from hosts.netns import netns_unavailable, test_hosts

    reason = netns_unavailable()
    if reason:
        print(f"skipped: {reason}")
        return 0
    counts = [2] if a.smoke else [int(n) for n in a.calls.split(",")]
    seconds = 4.0 if a.smoke else a.seconds
    burst_calls = 2 if a.smoke else a.burst_calls
    load = os.getloadavg()
    print(
        f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} ({os.cpu_count()} cores)"
    )
    print(
        "| path | N | real time | latency p50 (ms) | p99 (ms) | playout p50 (ms) | p99 (ms) "
        "| cpu | cpu per call (session) | per core |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows: list[dict[str, Any]] = []
    failed = False

    def show(row: dict[str, Any]) -> None:
        nonlocal failed
        n = row["n"]
        # the smoke fails when the path is broken (an error, no marker back), not when a busy
        # machine made it slow: real time is the figure the full run reports
        failed |= bool(row["errors"]) or math.isnan(row["p50_ms"])
        per = row["cpu"] / n
        print(
            f"| {row['kind']} | {n} | {row['realtime']}/{n} | {fmt(row['p50_ms'])} "
            f"| {fmt(row['p99_ms'])} | {fmt(row['playout_p50_ms'])} "
            f"| {fmt(row['playout_p99_ms'])} | {row['cpu']:.2f} | {per:.3f} "
            f"| {fmt(1 / per if per > 0 else math.nan, '.0f')} |",
            flush=True,
        )
        for e in row["errors"]:
            print(f"  error: {e}", file=sys.stderr)

    with test_hosts("cb") as hosts:
        manifest = Path(f"/tmp/calls-bench-{os.getpid()}.json")
        nodes = [{"type": "Gain", "params": {"gain_db": -6}}]
        manifest.write_text(json.dumps({"version": 1, "name": "gain", "nodes": nodes}))
        try:
            for n in counts:
                pair = {}
                for kind in ("calls", "webrtc"):
                    row = round_trip(hosts, kind, n, seconds, min(a.clients, n), manifest)
                    rows.append(row)
                    pair[kind] = row
                    show(row)
                ratio = (pair["calls"]["cpu"] / n) / (pair["webrtc"]["cpu"] / n)
                print(f"|  | {n} | call cpu / session cpu: {ratio:.2f} |  |  |  |  |  |  |  |")
            clients = min(a.clients, burst_calls)
            row = round_trip(hosts, "bursts", burst_calls, seconds, clients, manifest, burst=10)
            rows.append(row)
            show(row)
        finally:
            manifest.unlink(missing_ok=True)
    load = os.getloadavg()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))
    if failed:
        print("a call or session failed, or no marker came back", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
