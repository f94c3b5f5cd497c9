"""Engine benchmark: per-frame cost of pipelines on the Python backend, Rust stage by stage and
Rust fused, fed one 20 ms frame at a time as a live stream is (the next frame enters only when the
previous one is out). Also the resampler's cost and quality on both backends beside soxr, and the
seed's trivial pipeline. Every number is from this one run; ratios compare columns of it.

    python benchmarks/engine_bench.py            # full run; copy the output into docs/benchmarks.md
    python benchmarks/engine_bench.py --smoke    # a few frames: proves it runs (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np

from media_nodes import ChannelMix, Gain, PassThrough, Rebuffer, Resample
from stream import AudioFrame, Node, Pipeline, engine_version
from stream.testing import tone

RATE = 48000
FRAME = 960  # 20 ms at 48 kHz
REPEATS = 9  # best-of short runs, to keep bursts of other load out of the figures


def frames(channels: int, count: int) -> list[AudioFrame]:
    signal = tone(440.0, count * FRAME / RATE, RATE, channels=channels) + np.float32(0.01)
    return [
        AudioFrame(signal[:, i * FRAME : (i + 1) * FRAME].copy(), RATE, i * FRAME)
        for i in range(count)
    ]


async def live(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


async def time_pipeline(
    make: Callable[[], list[Node]], items: list[Any], backend: str, fuse: bool
) -> float:
    """Best-of-REPEATS microseconds per input item through a fresh pipeline."""
    os.environ["REMOTEMEDIA_RUNTIME"] = backend
    best = float("inf")
    for _ in range(REPEATS):
        pipeline = Pipeline(make(), fuse=fuse)
        async with pipeline:
            t0 = time.perf_counter()
            async for _ in pipeline.process(live(items)):
                pass
            best = min(best, time.perf_counter() - t0)
    return best / len(items) * 1e6


async def time_kernels(
    make: Callable[[], list[Node]], items: list[AudioFrame], backend: str
) -> float:
    """The same stages' kernels called directly in a loop: the work without the runtime."""
    os.environ["REMOTEMEDIA_RUNTIME"] = backend
    best = float("inf")
    for _ in range(REPEATS):
        nodes = make()
        for node in nodes:
            node.initialize()
        kernels = [n.kernel for n in nodes]  # type: ignore[attr-defined]
        t0 = time.perf_counter()
        for frame in items:
            blocks = [frame.samples]
            for k in kernels:
                blocks = [
                    o for b in blocks for o in k.process(b, RATE)
                ]  # chains timed here stay at 48 kHz
        best = min(best, time.perf_counter() - t0)
    return best / len(items) * 1e6


async def queue_chain_baseline(stages: int, items: list[Any]) -> float:
    """A chain of asyncio tasks joined by queues, each passing items on: the usual design."""
    best = float("inf")
    for _ in range(REPEATS):
        queues: list[asyncio.Queue[Any]] = [asyncio.Queue(8) for _ in range(stages + 1)]

        async def stage(q_in: asyncio.Queue[Any], q_out: asyncio.Queue[Any]) -> None:
            while (item := await q_in.get()) is not None:
                await q_out.put(item)
            await q_out.put(None)

        tasks = [asyncio.create_task(stage(queues[i], queues[i + 1])) for i in range(stages)]
        t0 = time.perf_counter()
        for item in items:
            await queues[0].put(item)
            await queues[-1].get()
        best = min(best, time.perf_counter() - t0)
        await queues[0].put(None)
        await asyncio.gather(*tasks)
    return best / len(items) * 1e6


class Hand(Node):
    """A stage that does nothing but hand its item on: all of its cost is the runtime's."""

    def process(self, item: Any) -> Any:
        return item


async def stats_cost(count: int, stages: int = 20) -> list[tuple[str, float, float, int]]:
    """Per frame, us: ``(case, stats on, stats off, stages)``, on and off interleaved in one run
    (best of REPEATS each), so load that comes and goes hits both alike."""
    cases: list[tuple[str, Callable[[], list[Node]], list[Any], str, int]] = [
        (
            f"{stages} Python hand-on stages",
            lambda: [Hand() for _ in range(stages)],
            list(range(count)),
            "python",
            stages,
        ),
        ("real chain, python", real_chain, frames(2, count), "python", 5),
        ("real chain, rust fused", real_chain, frames(2, count), "rust", 5),
    ]
    out = []
    for name, make, items, backend, n_stages in cases:
        os.environ["REMOTEMEDIA_RUNTIME"] = backend
        best = {True: float("inf"), False: float("inf")}
        for _ in range(REPEATS):
            for keep in (True, False):
                pipeline = Pipeline(make(), stats=keep)
                async with pipeline:
                    t0 = time.perf_counter()
                    async for _ in pipeline.process(live(items)):
                        pass
                    best[keep] = min(best[keep], time.perf_counter() - t0)
        out.append((name, best[True] / len(items) * 1e6, best[False] / len(items) * 1e6, n_stages))
    return out


def gains(n: int) -> Callable[[], list[Node]]:
    return lambda: [Gain(-0.1) for _ in range(n)]


def real_chain() -> list[Node]:
    # stereo 48 kHz in: down-mix, level, resample for a speech model, level, fixed 512-sample frames
    return [ChannelMix(1), Gain(-3.0), Resample(16000), Gain(1.0), Rebuffer(samples=512)]


def resample_quality(backend: str) -> tuple[float, float, float]:
    """(SNR 1 kHz, SNR 5 kHz, rejection of 13 kHz) in dB at 48k->16k, streamed in 20 ms frames."""
    os.environ["REMOTEMEDIA_RUNTIME"] = backend

    def run(freq: float) -> np.ndarray:
        node = Resample(16000)
        node.initialize()
        x = tone(freq, 1.0, RATE)
        out = [
            b
            for i in range(0, x.shape[1], FRAME)
            for b in node.kernel.process(x[:, i : i + FRAME], RATE)
        ]
        return np.concatenate(out, axis=1)[0]

    res = []
    for freq in (1000.0, 5000.0):
        y = run(freq)
        t = np.arange(y.size) / 16000  # the fit finds amplitude and phase, so delay needs no term
        keep = slice(2000, y.size - 100)
        basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)[keep]
        coef, *_ = np.linalg.lstsq(basis, y[keep], rcond=None)
        err = y[keep] - basis @ coef
        res.append(10 * np.log10(np.mean((basis @ coef) ** 2) / np.mean(err**2)))
    y = run(13000.0)
    res.append(10 * np.log10(0.125 / np.mean(y[2000:] ** 2)))  # input power of a 0.5 sine is 0.125
    return res[0], res[1], res[2]


def resample_cost(count: int) -> dict[str, float]:
    x = frames(1, count)
    out: dict[str, float] = {}
    for backend in ("python", "rust"):
        os.environ["REMOTEMEDIA_RUNTIME"] = backend
        runs = []
        for _ in range(REPEATS):
            node = Resample(16000)
            node.initialize()
            k = node.kernel
            t0 = time.perf_counter()
            for f in x:
                k.process(f.samples, RATE)
            runs.append(time.perf_counter() - t0)
        out[backend] = min(runs) / count * 1e6
    try:
        import soxr

        runs = []
        for _ in range(REPEATS):
            rs = soxr.ResampleStream(RATE, 16000, 1, dtype="float32", quality="HQ")
            t0 = time.perf_counter()
            for f in x:
                rs.resample_chunk(f.samples[0])
            runs.append(time.perf_counter() - t0)
        out["soxr HQ"] = min(runs) / count * 1e6
    except ImportError:
        pass
    return out


async def seed_case() -> dict[str, float]:
    out = {}
    for backend, use_rust in (("python", False), ("rust", True)):
        os.environ["REMOTEMEDIA_RUNTIME"] = backend
        runs = []
        for _ in range(200):
            p = Pipeline(name="example")
            for i in range(3):
                p.add_node(PassThrough(name=f"step{i}"))
            t0 = time.perf_counter()
            await p.run([1, 2, 3, 4, 5], use_rust=use_rust)
            runs.append(time.perf_counter() - t0)
        out[backend] = statistics.median(runs) * 1e6
    return out


async def main(smoke: bool) -> None:
    global REPEATS
    count = 20 if smoke else 500
    REPEATS = 1 if smoke else REPEATS
    print(
        f"# engine benchmark: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {sys.version.split()[0]}, engine {engine_version()}, {count} frames of 20 ms"
    )

    mono = frames(1, count)
    print("\n## Chains of Gain stages, 48 kHz mono 20 ms frames, us per frame")
    print(
        f"{'stages':>6} {'python':>9} {'rust':>9} {'fused':>9} {'py/fused':>9}"
        f" {'py ovh/st':>10} {'fused +st':>10} {'queue-chain/st':>15}"
    )
    fused_one = 0.0
    for n in (1, 5, 10):
        py = await time_pipeline(gains(n), mono, "python", True)
        rs = await time_pipeline(gains(n), mono, "rust", False)
        fu = await time_pipeline(gains(n), mono, "rust", True)
        py_work = await time_kernels(gains(n), mono, "python")
        base = await queue_chain_baseline(n, mono)
        fused_one = fused_one or fu
        marginal = f"{(fu - fused_one) / (n - 1):>10.2f}" if n > 1 else f"{'':>10}"
        print(
            f"{n:>6} {py:>9.2f} {rs:>9.2f} {fu:>9.2f} {py / fu:>8.1f}x"
            f" {(py - py_work) / n:>10.2f} {marginal} {base / n:>15.2f}"
        )
    print(
        "py ovh/st: the runtime's overhead per Python stage (pipeline time minus the same kernels"
        " called in a bare loop, over the stage count).\nfused +st: cost of each stage added to a"
        " fused segment, its work included.\nqueue-chain/st: asyncio tasks joined by queues passing"
        " the frame on, per stage (the usual design)."
    )

    stereo = frames(2, count)
    print(
        "\n## Real chain: ChannelMix(1) > Gain > Resample(16k) > Gain > Rebuffer(512), stereo in, us per frame"
    )
    py = await time_pipeline(real_chain, stereo, "python", True)
    rs = await time_pipeline(real_chain, stereo, "rust", False)
    fu = await time_pipeline(real_chain, stereo, "rust", True)
    print(
        f"python {py:.2f}   rust stage by stage {rs:.2f}   rust fused {fu:.2f}   python/fused {py / fu:.1f}x"
    )

    print("\n## Resample 48k -> 16k, mono 20 ms frames")
    cost = resample_cost(count)
    print("cost us/frame: " + "   ".join(f"{k} {v:.2f}" for k, v in cost.items()))
    if "soxr HQ" in cost:
        print(f"rust vs soxr HQ: {cost['soxr HQ'] / cost['rust']:.2f}x as fast")
    for backend in ("python", "rust"):
        s1, s5, rej = resample_quality(backend)
        print(
            f"quality {backend}: SNR 1 kHz {s1:.1f} dB, SNR 5 kHz {s5:.1f} dB, 13 kHz rejected {rej:.1f} dB"
        )

    print("\n## Cost of Pipeline.stats(): stats=True against stats=False, us per frame")
    print(f"{'case':<28} {'on':>8} {'off':>8} {'added ns':>9} {'stages':>7} {'ns/stage':>9}")
    for name, on, off, stages in await stats_cost(count * 4):
        added = (on - off) * 1000
        print(f"{name:<28} {on:>8.2f} {off:>8.2f} {added:>9.0f} {stages:>7} {added / stages:>9.0f}")
    print(
        "added ns: per frame, histograms and latency kept; a fused segment is one native call,"
        " timed once for all its stages; latency costs once per frame, whatever the stage count."
    )

    print("\n## Seed case: 3 PassThrough stages, 5 items, whole run(), us (median of 200)")
    seed = await seed_case()
    print(
        f"python {seed['python']:.1f}   rust {seed['rust']:.1f}   rust/python time {seed['rust'] / seed['python']:.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few frames only, to prove it runs")
    asyncio.run(main(parser.parse_args().smoke))
