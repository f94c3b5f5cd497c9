"""Playout buffer benchmark: the one-way latency the call's playout buffer adds (p50/p99: from a
chunk's arrival to the tick that hands it to the pipeline), the share of concealed frames, and
the cost of one tick, on simulated feeds of 20 ms chunks (no network, no event loop: the buffer
is driven tick by tick, so the figures are the algorithm's, not a machine's scheduling).

Feeds: steady (every chunk on time), jitter (each chunk late by a uniform 0-60 ms, order
kept as TCP keeps it), bursts (200 ms at a time), loss (10 % of chunks never come), and bursts
with loss.

    python benchmarks/playout_bench.py            # 60 s per feed; copy the table into docs
    python benchmarks/playout_bench.py --smoke    # 2 s per feed: proves it runs (CI)
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from stream.testing import speech_like
from stream.transport.telephony.playout import PlayoutBuffer

RATE = 8000
F = 160
TICK = 0.02


def arrivals(kind: str, n: int, rng: np.random.Generator) -> list[float | None]:
    """Arrival time of each chunk (None: lost). Chunk ``i`` is complete at ``(i + 1) * TICK``."""
    t = (np.arange(n) + 1) * TICK
    if "jitter" in kind:
        t = np.maximum.accumulate(t + rng.uniform(0, 0.060, n))  # TCP keeps the order
    if "bursts" in kind:
        t = (np.floor(np.arange(n) / 10) + 1) * 10 * TICK
    out: list[float | None] = [float(x) for x in t]
    if "loss" in kind:
        out = [None if (rng.random() < 0.1 and i) else x for i, x in enumerate(out)]
    return out


def run(kind: str, seconds: float) -> dict[str, float]:
    rng = np.random.default_rng(0)
    x = speech_like(seconds, rate=RATE).astype(np.float32)
    n = x.shape[0] // F
    when = arrivals(kind, n, rng)
    order = sorted((t, i) for i, t in enumerate(when) if t is not None)
    buf = PlayoutBuffer(RATE, 20.0)
    k = 0
    tick_ns = 0
    ticks = 0
    start = order[0][0]
    t = start
    while k < len(order) or buf.level > 0:  # until every chunk came and was played
        while k < len(order) and order[k][0] <= t + 1e-9:
            i = order[k][1]
            buf.put(x[i * F : (i + 1) * F], i * 20, now=order[k][0])
            k += 1
        t0 = time.perf_counter_ns()
        buf.pull(now=t)
        tick_ns += time.perf_counter_ns() - t0
        ticks += 1
        t = start + ticks * TICK
    s = buf.stats
    return {
        "p50": s["delay_ms_p50"] or 0.0,
        "p99": s["delay_ms_p99"] or 0.0,
        "concealed": 100 * s["concealed"] / max(1, s["frames"]),
        "lost": s["lost"],
        "stretched": s["stretched"],
        "skipped": s["skipped"],
        "us_per_tick": tick_ns / ticks / 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    seconds = 2.0 if args.smoke else 60.0
    print(
        "| feed | added latency p50 (ms) | p99 (ms) | concealed frames | lost | stretched | skipped | us per tick |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for kind in ("steady", "jitter", "bursts", "loss", "bursts+loss"):
        r = run(kind, seconds)
        print(
            f"| {kind} | {r['p50']:.1f} | {r['p99']:.1f} | {r['concealed']:.1f} % | {r['lost']:.0f} "
            f"| {r['stretched']:.0f} | {r['skipped']:.0f} | {r['us_per_tick']:.0f} |"
        )


if __name__ == "__main__":
    main()
