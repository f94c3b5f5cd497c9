"""Ray benchmark: what a stage costs when it runs in a Ray actor instead of in this process.

A two-node Ray cluster (head + one worker node, separate raylets) is started on this machine
inside a private network namespace (``stream.ray.cluster``: everything binds 127.0.0.1), and this
script runs again inside it as the driver. The stage is Resample 48 kHz -> 16 kHz, stereo, 20 ms
frames, on the Rust engine (``--backend`` to change), placed on the worker node. Per frame:

- local: ``process()`` called in this process;
- remote, 1 in flight: send a frame, wait for its answer, then the next: the round trip is the
  latency a RemoteStage adds to a frame;
- remote, N in flight: frames sent as fast as the window allows: the round trip includes the
  wait behind earlier frames, and frames/s shows what the window buys.

Every number is from this one run. Needs root, ``ip netns`` and Ray (``.ci/install-ray.sh``).

    python benchmarks/ray_scale.py            # full run; copy the output into docs/deploy.md
    python benchmarks/ray_scale.py --smoke    # a few frames: proves it runs (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from typing import Any

import numpy as np

from media_nodes import Resample
from stream import Pipeline, engine_version
from stream.frames import AudioFrame
from stream.testing import split_frames, tone

RATE = 48000
FRAME = 960  # 20 ms


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a few frames: proves it runs")
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--backend", default="rust", choices=["rust", "python"])
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    count = 100 if args.smoke else args.frames
    if args.inside:
        asyncio.run(inside(count, args.backend))
        return

    from stream.ray.cluster import cluster_unavailable, local_cluster

    reason = cluster_unavailable()
    if reason:
        sys.exit(f"ray_scale: no local Ray cluster here: {reason}")
    argv = [sys.executable, os.path.abspath(__file__), "--inside", "--frames", str(count)]
    argv += ["--backend", args.backend]
    with local_cluster(workers=1, head_cpus=1, worker_cpus=1) as cluster:
        done = cluster.run(argv, timeout=600)
    sys.exit(done.returncode)


if __name__ == "__main__":
    main()
