"""EchoCancel's cost per 20 ms frame for the whole node, against its kernel alone.

The node is fed as a live leg feeds it: for each 20 ms near-end frame, the reference frame for
the same time arrives first (as a WebRTC leg's outgoing audio or ``SpeakerSink.reference()``
delivers it), read by the node's own task; the node then places it on the near-end's clock, moves
it by the bulk delay, runs the delay estimator (``delay_ms="auto"``), calls the kernel and stamps
the output. The kernel alone is the same kernel (``build_kernel()``: same backend, same
arguments) called in a bare loop on the same near-end and the already-aligned reference. Every
configuration: 16 and 48 kHz, a mono or a stereo reference, ``delay_ms=100`` or ``"auto"``,
``algorithm`` ``kalman`` (the default), ``aec3`` and ``speex``, both backends
(``REMOTEMEDIA_RUNTIME``). The scene is ``echo_scene()`` with the echo 150 ms late. Times are
CPU time of this process (``time.process_time``: what the stream costs a core, whatever else the
machine runs), best of ``--repeats`` runs, in µs per 20 ms frame; "% core" is that over 20 ms.

    python benchmarks/echo_cost.py            # 10 s scenes, best of 3
    python benchmarks/echo_cost.py --smoke    # 1.5 s scenes, one run: proves it runs (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np

from media_nodes.audio.echo_cancel import KALMAN_SEARCH_MS, EchoCancel
from media_nodes.audio.echo_delay import delay_estimator
from media_nodes.audio.echo_scene import echo_scene
from stream import AudioFrame, engine_available
from stream.testing import split_frames

FRAME_S = 0.02
ECHO_S = 0.15  # the echo's bulk delay in the scene
FIXED_MS = 100.0  # the fixed bulk delay (the kernel finds the rest)
FILTER_MS = 200.0  # EchoCancel's default filter_ms
BACKENDS = ("python", "rust")


def scene(seconds: float, rate: int, channels: int) -> tuple[list[AudioFrame], list[AudioFrame]]:
    """Near-end and reference frames of 20 ms: the echo ``ECHO_S`` late; a stereo reference
    carries the far-end on both channels (the node mixes it down)."""
    s = echo_scene(seconds, rate=rate, double_talk=None)
    d = round(ECHO_S * rate)
    mic = s["noise"] + s["near"] + np.concatenate([np.zeros(d), s["echo"][:-d]])
    far = np.repeat(s["far"][None, :], channels, axis=0)
    n = round(FRAME_S * rate)
    return (
        split_frames(mic[None, :].astype(np.float32), rate, n),
        split_frames(far.astype(np.float32), rate, n),
    )


async def node_us(
    node: EchoCancel, near: list[AudioFrame], ref: list[AudioFrame]
) -> tuple[float, float]:
    """CPU µs per near-end frame of the whole node, fed live (each reference frame queued just
    before its near-end frame), initialize/flush/cleanup excluded: over the scene and over its
    first second (with Kalman and "auto", the 600 ms search filter runs until the delay is
    found, 1 s into this scene)."""
    queue: asyncio.Queue[AudioFrame | None] = asyncio.Queue()

    async def reference() -> AsyncIterator[AudioFrame]:
        while (item := await queue.get()) is not None:
            yield item

    node.reference = reference()
    await node.initialize()
    first = round(1.0 / FRAME_S)
    t0 = time.process_time()
    t1 = t0
    for i, (r, x) in enumerate(zip(ref, near, strict=True)):
        queue.put_nowait(r)
        await asyncio.sleep(0)  # the node's reader takes it, as it would from a live track
        async for _ in node.process(x):
            pass
        if i == first - 1:
            t1 = time.process_time()
    spent = time.process_time() - t0
    node.flush()
    queue.put_nowait(None)
    await node.cleanup()
    return spent / len(near) * 1e6, (t1 - t0) / min(first, len(near)) * 1e6


def kernel_us(node: EchoCancel, near: list[AudioFrame], ref: list[AudioFrame]) -> float:
    """CPU µs per frame of the node's kernel alone, on the reference already moved by the node's
    fixed bulk delay."""
    kernel = node.build_kernel()
    rate = near[0].sample_rate
    far = np.concatenate([f.samples for f in ref], axis=1)
    d = round(FIXED_MS * rate / 1000)
    far = np.concatenate([np.zeros((far.shape[0], d), np.float32), far[:, :-d]], axis=1)
    blocks, pos = [], 0
    for x in near:
        n = x.samples.shape[1]
        blocks.append((x.samples, np.ascontiguousarray(far[:, pos : pos + n])))
        pos += n
    t0 = time.process_time()
    for mic, f in blocks:
        kernel.process(mic, f, rate)
    spent = time.process_time() - t0
    kernel.flush()
    return spent / len(near) * 1e6


def cpu() -> str:
    """The CPU's model and widest vector unit (the Kalman kernel's passes are compiled for AVX2
    and AVX-512 and picked at run time, so the same code runs at different speeds)."""
    try:
        info = Path("/proc/cpuinfo").read_text(encoding="ascii", errors="replace")
    except OSError:
        return platform.machine()
    model = next(
        (ln.split(":", 1)[1].strip() for ln in info.splitlines() if "model name" in ln), ""
    )
    flags = set(next((ln for ln in info.splitlines() if ln.startswith("flags")), "").split())
    simd = next((f for f in ("avx512f", "avx2") if f in flags), "no AVX2")
    return f"{platform.machine()} {model} ({simd})".strip()


def available(algorithm: str, backend: str) -> str | None:
    """Why ``algorithm`` cannot run on ``backend`` here, or None."""
    if backend == "rust" and not engine_available():
        return "engine not built"
    os.environ["REMOTEMEDIA_RUNTIME"] = backend
    try:
        node = EchoCancel([], algorithm=algorithm)
        node.build_kernel()
    except Exception as exc:  # a missing library or wheel: that row is skipped, with the reason
        return str(exc).splitlines()[0][:80]
    return node.backend if node.backend != backend else None


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="short scenes, one run")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    seconds, repeats = (1.5, 1) if args.smoke else (args.seconds, args.repeats)
    print(
        f"# EchoCancel, whole node vs kernel alone: {cpu()}, {os.cpu_count()} cores, "
        f"Python {sys.version.split()[0]}; {seconds:g} s scenes, best of {repeats}, CPU µs per "
        "20 ms frame"
    )
    print()
    print(
        "| algorithm | backend | rate | far | delay_ms | kernel µs | node µs | node / kernel | "
        "% core | node µs, first 1 s |"
    )
    print("|---|---|---:|---|---|---:|---:|---:|---:|---:|")
    worst: dict[str, float] = {}
    for algorithm in ("kalman", "aec3", "speex"):
        for backend in BACKENDS:
            why = available(algorithm, backend)
            if why is not None:
                print(f"| {algorithm} | {backend} | | | | skipped: {why} | | | | |")
                continue
            os.environ["REMOTEMEDIA_RUNTIME"] = backend
            for rate in (16000, 48000):
                for channels in (1, 2):
                    near, ref = scene(seconds, rate, channels)
                    k = min(
                        kernel_us(EchoCancel([], delay_ms=FIXED_MS, algorithm=algorithm), near, ref)
                        for _ in range(repeats)
                    )
                    for delay in (FIXED_MS, "auto"):
                        runs = [
                            await node_us(
                                EchoCancel([], delay_ms=delay, algorithm=algorithm), near, ref
                            )
                            for _ in range(repeats)
                        ]
                        n, n1 = min(r[0] for r in runs), min(r[1] for r in runs)
                        far = "stereo" if channels == 2 else "mono"
                        shown = delay if isinstance(delay, str) else f"{delay:g}"
                        print(
                            f"| {algorithm} | {backend} | {rate // 1000} kHz | {far} | {shown} | "
                            f"{k:.0f} | {n:.0f} | {n / k:.2f}x | {n / 200:.2f} % | {n1:.0f} |"
                        )
                        worst[backend] = max(worst.get(backend, 0.0), n)
    print()
    for backend, n in worst.items():
        print(
            f"most expensive node, {backend}: {n:.0f} µs per 20 ms frame ({n / 200:.2f} % of a core)"
        )
    parts(seconds, repeats)


def estimate_ms(backend: str, near: list[AudioFrame], ref: list[AudioFrame], repeats: int) -> float:
    """CPU ms of one delay estimate over the whole window (the scene written, then estimated at
    its end), best of ``repeats`` x 5."""
    rate = near[0].sample_rate
    estimator = delay_estimator(rate, backend, "bench")
    pos = 0
    for x, r in zip(near, ref, strict=True):
        estimator.add_near(pos, x.samples)
        estimator.add_far(pos, r.samples)
        pos += x.samples.shape[1]
    best = float("inf")
    for _ in range(repeats * 5):
        t0 = time.process_time()
        estimator.estimate(pos)
        best = min(best, time.process_time() - t0)
    return best * 1e3


def parts(seconds: float, repeats: int) -> None:
    """What ``"auto"`` adds, part by part: the Kalman kernel with the search filter against the
    usual one, and one delay estimate (numpy in the Python twin, the engine's on Rust)."""
    print(
        f'\n## The parts of "auto": Kalman kernel alone per 20 ms frame with the {FILTER_MS:g} ms '
        f"filter and the {KALMAN_SEARCH_MS:g} ms search filter (µs), one delay estimate (ms)\n"
    )
    print("| part | backend | 16 kHz | 48 kHz |")
    print("|---|---|---:|---:|")
    for backend in BACKENDS:
        if backend == "rust" and not engine_available():
            continue
        os.environ["REMOTEMEDIA_RUNTIME"] = backend
        scenes = {rate: scene(seconds, rate, 1) for rate in (16000, 48000)}
        for filter_ms in (FILTER_MS, KALMAN_SEARCH_MS):
            cells = [
                min(
                    kernel_us(EchoCancel([], delay_ms=FIXED_MS, filter_ms=filter_ms), *s)
                    for _ in range(repeats)
                )
                for s in scenes.values()
            ]
            print(
                f"| Kalman kernel, {filter_ms:g} ms filter, µs | {backend} | "
                + " | ".join(f"{c:.0f}" for c in cells)
                + " |"
            )
        cells = [estimate_ms(backend, *s, repeats) for s in scenes.values()]
        print(f"| delay estimate, ms | {backend} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")


if __name__ == "__main__":
    asyncio.run(main())
