"""G.711 benchmark: the engine's G711Kernel vs its Python twin, in microseconds per 20 ms frame at
8 kHz mono (160 samples, what a phone line carries per message). Timed three ways: the kernel's
``encode`` and ``decode`` in a bare loop, what a call does per frame each way (one message's
codes in, one chunk out: a 1-D line buffer through the kernel), and G711Encode -> G711Decode in
a pipeline, per input frame. Every number is from this one run; compare columns of it.

    python benchmarks/g711_bench.py            # full run; copy the output into docs/stages-audio.md
    python benchmarks/g711_bench.py --smoke    # a few frames: proves it runs (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from media_nodes.audio import G711Decode, G711Encode
from stream import AudioFrame, Pipeline, engine_version
from stream.kernels.g711 import g711_kernel
from stream.testing import noise

RATE = 8000
FRAME = 160  # 20 ms
BACKENDS = ("python", "rust")


def frames(count: int) -> list[AudioFrame]:
    x = noise(count * FRAME / RATE, RATE, amplitude=0.3, seed=0)
    return [
        AudioFrame(np.ascontiguousarray(x[:, i * FRAME : (i + 1) * FRAME]), RATE, i * FRAME)
        for i in range(count)
    ]


def loop_us(step: Callable[[Any], Any], items: list[Any], repeats: int) -> float:
    """Best-of-``repeats`` µs per item of ``step(item)`` in a bare loop."""
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for item in items:
            step(item)
        best = min(best, (time.perf_counter() - t) / len(items) * 1e6)
    return best


def pipeline_us(backend: str, items: list[AudioFrame], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        pipeline = Pipeline([G711Encode(backend=backend), G711Decode(backend=backend)])
        t = time.perf_counter()
        out = asyncio.run(pipeline.run(items))
        best = min(best, (time.perf_counter() - t) / len(items) * 1e6)
        assert len(out) == len(items)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a few frames, one repeat")
    args = parser.parse_args()
    count, repeats = (20, 1) if args.smoke else (2000, 9)
    items = frames(count)
    print(
        f"{platform.machine()}, Python {sys.version.split()[0]}, engine {engine_version()}; "
        f"best of {repeats} runs of {count} frames of 20 ms at 8 kHz mono, µs per frame"
    )
    rows: dict[str, dict[str, float]] = {}
    for backend in BACKENDS:
        kernel, chosen = g711_kernel("mulaw", backend=backend)
        assert chosen == backend, (chosen, backend)
        # per frame: its samples, its codes, and what a call holds: a 1-D chunk, a message payload
        work = []
        for f in items:
            codes = kernel.encode(f.samples, RATE)
            work.append((f.samples, codes, f.samples[0].copy(), codes[0].tobytes()))

        def encode(w: Any, k: Any = kernel) -> Any:
            return k.encode(w[0], RATE)

        def decode(w: Any, k: Any = kernel) -> Any:
            return k.decode(w[1])

        def call(w: Any, k: Any = kernel) -> Any:
            k.decode(np.frombuffer(w[3], np.uint8)[None, :])
            return k.encode(w[2][None, :], RATE)[0].tobytes()

        rows[backend] = {
            "G711Kernel.encode (bare loop)": loop_us(encode, work, repeats),
            "G711Kernel.decode (bare loop)": loop_us(decode, work, repeats),
            "a call's frame: decode a message, encode a chunk": loop_us(call, work, repeats),
            "G711Encode -> G711Decode, pipeline": pipeline_us(backend, items, repeats),
        }
    print("| per 20 ms frame, 8 kHz mono | Python | Rust | Python / Rust |")
    print("|---|---:|---:|---:|")
    for name in rows["python"]:
        p, r = rows["python"][name], rows["rust"][name]
        print(f"| {name} | {p:.2f} | {r:.2f} | {p / r:.1f}x |")


if __name__ == "__main__":
    main()
