"""Ray benchmark: a stage in a Ray actor, and WebRTC sessions on 1 vs 2 Ray session workers.

A two-node Ray cluster (head + one worker node, separate raylets) is started on this machine,
each node a host in a network namespace of its own, joined by a bridge, plus a peer host
(``tests/hosts/ray_cluster.py``'s ``local_cluster(lan=True)``: nothing leaves the namespaces).

Part 1, ``stage``: this script runs again on the head as the driver. The stage is Resample
48 kHz -> 16 kHz, stereo, 20 ms frames, on the Rust engine (``--backend`` to change), placed on
the worker node. Per frame:

- local: ``process()`` called in this process;
- remote, 1 in flight: send a frame, wait for its answer, then the next: the round trip is the
  latency a RemoteStage adds to a frame;
- remote, N in flight: frames sent as fast as the window allows: the round trip includes the
  wait behind earlier frames, and frames/s shows what the window buys.

Part 2, ``sessions``: two WebRTC fronts on the head (``remotemedia serve --ray``), the chain of
``webrtc_sessions.py`` (mono, resample to 16 kHz, gain): ``1 worker`` has one session worker, on
the worker node (``--ray-resources '{"worker": 1}'``); ``2 workers`` has one on each node. For
growing N, N peers on the peer host (``--clients`` processes) send 48 kHz audio with a marker
every second and receive it back; a session keeps real time when it got at least 95 % of its
audio back, saw every marker and its latency did not grow (``webrtc_sessions.summarize``).
The rounds alternate between the fronts, so both see the same machine load. Every Ray node, the
fronts and the peers share this machine's cores: ``2 workers`` can use two of them where
``1 worker`` uses one.

Every number is from this one run. Needs root, ``ip netns``, Ray (``.ci/install-ray.sh``) and
aiortc.

    python benchmarks/ray_scale.py            # full run; copy the output into docs/deploy.md
    python benchmarks/ray_scale.py --smoke    # a few frames, one short round: proves it runs (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from media_nodes import Resample
from stream import Pipeline, engine_version
from stream.frames import AudioFrame
from stream.testing import split_frames, tone

RATE = 48000
FRAME = 960  # 20 ms
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CHAIN = {
    "version": 1,
    "name": "chain",
    "nodes": [
        {"type": "ChannelMix", "params": {"channels": 1}},
        {"type": "Resample", "params": {"sample_rate": 16000}},
        {"type": "Gain", "params": {"gain_db": -3}},
    ],
}
FRONTS = {"1 worker": ["--ray-resources", '{"worker": 1}'], "2 workers": []}


def frames(count: int) -> list[AudioFrame]:
    return list(split_frames(tone(440, count * FRAME / RATE, RATE, channels=2), RATE, FRAME))


def pct(values_ns: list[int] | np.ndarray[Any, Any], q: float) -> float:
    """Percentile ``q`` of nanosecond values, in microseconds."""
    return float(np.percentile(np.asarray(values_ns, dtype=np.float64), q)) / 1000.0


def local_row(count: int, backend: str) -> dict[str, Any]:
    node = Resample(16000, backend=backend)
    node.initialize()
    times: list[int] = []
    t_all = time.perf_counter_ns()
    for frame in frames(count):
        t0 = time.perf_counter_ns()
        node.process(frame)
        times.append(time.perf_counter_ns() - t0)
    total = time.perf_counter_ns() - t_all
    node.cleanup()
    return {"label": "local", "times": times, "fps": count / (total / 1e9), "where": node.backend}


async def remote_row(count: int, backend: str, in_flight: int) -> dict[str, Any]:
    from stream.ray import RemoteStage

    stage = RemoteStage(
        Resample(16000, backend=backend),
        num_cpus=0.5,
        resources={"worker": 1},
        max_in_flight=in_flight,
    )
    async with Pipeline([stage], name="bench") as pipeline:
        warm = [x async for x in pipeline.process(frames(20))]  # worker warm-up, not timed
        assert warm
        stage.round_trips_ns.clear()
        t0 = time.perf_counter_ns()
        out = 0
        async for _ in pipeline.process(frames(count)):
            out += 1
        total = time.perf_counter_ns() - t0
    return {
        "label": f"remote, {in_flight} in flight",
        "times": list(stage.round_trips_ns),
        "fps": count / (total / 1e9),
        "where": f"{stage.backend} (peak {stage.peak_in_flight} in flight)",
    }


async def inside(count: int, backend: str) -> None:
    from stream.ray import connect

    connect()
    rows = [local_row(count, backend)]
    for window in (1, 4):
        rows.append(await remote_row(count, backend, window))
    base = rows[0]
    print(
        f"Resample 48k->16k stereo, 20 ms frames, {count} frames; {backend} kernel; "
        f"engine {engine_version() or 'not built'}; {platform.machine()}, {os.cpu_count()} cores"
    )
    print(
        f"{'where the stage runs':<24} {'p50 us':>9} {'p99 us':>9} {'added p50 us':>13} "
        f"{'frames/s':>9}  backend"
    )
    for row in rows:
        added = pct(row["times"], 50) - pct(base["times"], 50)
        extra = "" if row is base else f"{added:>13.0f}"
        print(
            f"{row['label']:<24} {pct(row['times'], 50):>9.1f} {pct(row['times'], 99):>9.1f} "
            f"{extra:>13} {row['fps']:>9.0f}  {row['where']}"
        )


# -- part 2: sessions on session workers
class Front:
    """A ``serve --ray`` front on the head host."""

    def __init__(self, cluster: Any, name: str, args: list[str], manifest: Path) -> None:
        self.cluster = cluster
        self.name = name
        argv = [sys.executable, "-m", "stream.transport", "serve", "--ray", cluster.address]
        argv += ["--host", cluster.addresses["head"], "--port", "0", "--pipeline", str(manifest)]
        argv += ["--max-sessions", "256", "--idle-timeout", "20", "--ray-cpus", "1", *args]
        self.proc = cluster.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.url = ""
        self.lines: list[str] = []
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line.rstrip())
                if line.startswith("serving on "):
                    self.url = line.split()[2]
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(180) or not self.url:
            cluster.stop(self.proc)
            tail = "\n".join(x for x in self.lines[-30:] if "state-dump" not in x)
            raise RuntimeError(f"front {name} did not start:\n{tail}")

    def status(self) -> dict[str, Any]:
        import urllib.request

        async def get() -> dict[str, Any]:
            with urllib.request.urlopen(self.url + "status", timeout=20) as resp:
                data: dict[str, Any] = json.loads(resp.read())
                return data

        result: dict[str, Any] = self.cluster.run_async("peer", get, 30)
        return result

    def stop(self) -> None:
        self.cluster.stop(self.proc)


def session_round(
    cluster: Any, front: Front, sessions: int, seconds: float, clients: int
) -> dict[str, Any]:
    """N peers through ``front``: real-time sessions, latency, and how they were spread."""
    sys.path.insert(0, str(HERE))
    from webrtc_sessions import summarize

    per = [sessions // clients + (i < sessions % clients) for i in range(clients)]
    argv = [sys.executable, str(HERE / "webrtc_sessions.py"), "client", "--url", front.url]
    argv += ["--seconds", str(seconds)]
    env = {"PYTHONPATH": str(REPO)}
    procs = [
        cluster.popen([*argv, "--sessions", str(n)], env=env, host="peer", stdout=subprocess.PIPE)
        for n in per
        if n
    ]
    spread: list[int] = []
    deadline = time.monotonic() + seconds * 0.7
    while time.monotonic() < deadline and sum(spread) < sessions:  # see where they went
        time.sleep(0.3)
        with contextlib.suppress(Exception):  # a busy front: the row just lacks the spread
            status = front.status()
            spread = sorted((w["sessions"] for w in status["workers"]), reverse=True)
    results: list[dict[str, Any]] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=seconds + 120)
        results.extend(json.loads(out))
    return {
        "front": front.name,
        "sessions": sessions,
        "spread": spread,
        **summarize(results, seconds),
    }


def sessions_part(cluster: Any, counts: list[int], seconds: float, clients: int) -> None:
    manifest = Path(f"/tmp/ray-scale-chain-{os.getpid()}.json")
    manifest.write_text(json.dumps(CHAIN))
    fronts: list[Front] = []
    try:
        for name, args in FRONTS.items():
            fronts.append(Front(cluster, name, args, manifest))
        print(
            f"\nWebRTC sessions through `serve --ray` (chain: mono, 16 kHz, gain), {seconds:g} s "
            f"each, peers in {clients} processes on the peer host"
        )
        print(
            f"{'front':<10} {'N':>3} {'real time':>9} {'p50 ms':>7} {'p99 ms':>7}  sessions per worker"
        )
        for n in counts:
            for front in fronts:
                row = session_round(cluster, front, n, seconds, min(clients, n))
                spread = "+".join(str(x) for x in row["spread"]) or "?"
                print(
                    f"{row['front']:<10} {n:>3} {row['realtime']:>5}/{n:<3} {row['p50_ms']:>7.1f} "
                    f"{row['p99_ms']:>7.1f}  {spread}",
                    flush=True,
                )
    finally:
        for front in fronts:
            front.stop()
        manifest.unlink(missing_ok=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a few frames, one short round")
    parser.add_argument("--part", choices=["all", "stage", "sessions"], default="all")
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--backend", default="rust", choices=["rust", "python"])
    parser.add_argument("--sessions", default="4,8,12,16,24", help="N values (comma separated)")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio per session")
    parser.add_argument("--clients", type=int, default=2, help="peer processes")
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    count = 100 if args.smoke else args.frames
    if args.inside:
        asyncio.run(inside(count, args.backend))
        return

    sys.path.insert(0, str(REPO / "tests"))  # the test hosts live with the tests
    from hosts.ray_cluster import cluster_unavailable, local_cluster

    reason = cluster_unavailable()
    if reason:
        sys.exit(f"ray_scale: no local Ray cluster here: {reason}")
    counts = [2] if args.smoke else [int(n) for n in args.sessions.split(",")]
    seconds = 3.0 if args.smoke else args.seconds
    # logical CPUs: the head holds the 2-worker front's head worker, the worker node both
    # fronts' workers and the remote stage
    with local_cluster(workers=1, head_cpus=2, worker_cpus=3, lan=True) as cluster:
        if args.part in ("all", "stage"):
            argv = [sys.executable, os.path.abspath(__file__), "--inside", "--frames", str(count)]
            argv += ["--backend", args.backend]
            done = cluster.run(argv, timeout=600)
            if done.returncode != 0:
                sys.exit(done.returncode)
        if args.part in ("all", "sessions"):
            sessions_part(cluster, counts, seconds, args.clients)


if __name__ == "__main__":
    main()
