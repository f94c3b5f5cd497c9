"""Stage benchmark: LevelMeter, EnergyVAD, Mixer and Denoise, Rust vs Python, in microseconds per 20 ms
frame at 48 kHz. Each stage is timed twice: its kernel called in a bare loop (the work), and the
node in a pipeline fed one frame at a time as a live stream feeds it (the work plus the runtime).
Also the VAD's boundary error on a synthetic scene of speech-like bursts over a noise floor, and
SileroVAD per 32 ms window at 16 kHz (tract in the engine vs onnxruntime in the twin) with the time
to build each kernel. Every number is from this one run; the ratios compare columns of it.

    python benchmarks/stages_bench.py            # full run; copy the output into docs/stages-audio.md
    python benchmarks/stages_bench.py --smoke    # a few frames: proves it runs (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np

import media_nodes.audio
from media_nodes.audio import Denoise, EnergyVAD, LevelMeter, Mixer, SileroVAD
from media_nodes.audio.silero_vad import model_path
from stream import AudioFrame, Event, Node, Pipeline, StreamError, engine_version
from stream.testing import noise, speech_like

RATE = 48000
FRAME = 960  # 20 ms
BACKENDS = ("python", "rust")


def frames(
    count: int, channels: int = 1, amplitude: float = 0.3, seed: int = 0
) -> list[AudioFrame]:
    """Speech-band noise bursts: loud for 0.5 s, quiet for 0.5 s, so the VAD switches state."""
    x = noise(count * FRAME / RATE, RATE, channels=channels, amplitude=amplitude, seed=seed)
    gate = (np.arange(x.shape[1]) // (RATE // 2)) % 2 == 0
    x = (x * np.where(gate, 1.0, 0.003)).astype(np.float32)
    return [
        AudioFrame(np.ascontiguousarray(x[:, i * FRAME : (i + 1) * FRAME]), RATE, i * FRAME)
        for i in range(count)
    ]


def best_us(run: Callable[[], float], repeats: int) -> float:
    return min(run() for _ in range(repeats))


def kernel_cost(
    make: Callable[[Any], Any],
    call: Callable[[Any, AudioFrame], Any],
    items: list[AudioFrame],
    backend: str,
    repeats: int,
) -> float:
    """Best-of-``repeats`` µs per frame of ``call(kernel, frame)`` in a bare loop."""
    module: Any
    if backend == "rust":
        from stream import _engine as module
    else:
        import media_nodes.audio as module

    def once() -> float:
        kernel = make(module)
        t0 = time.perf_counter()
        for frame in items:
            call(kernel, frame)
        return (time.perf_counter() - t0) / len(items) * 1e6

    return best_us(once, repeats)


async def live(items: list[Any]) -> AsyncIterator[Any]:
    for item in items:
        yield item


async def node_cost(
    make: Callable[[], Node], items: list[AudioFrame], backend: str, repeats: int
) -> float:
    """Best-of-``repeats`` µs per input frame through a one-stage pipeline."""
    os.environ["REMOTEMEDIA_RUNTIME"] = backend
    best = float("inf")
    for _ in range(repeats):
        pipeline = Pipeline([make()])
        async with pipeline:
            t0 = time.perf_counter()
            async for _ in pipeline.process(live(items)):
                pass
            best = min(best, time.perf_counter() - t0)
    return best / len(items) * 1e6


async def mixer_cost(inputs: int, items: list[AudioFrame], backend: str, repeats: int) -> float:
    """Best-of-``repeats`` µs per output frame of a Mixer over ``inputs`` ready inputs."""
    os.environ["REMOTEMEDIA_RUNTIME"] = backend
    best = float("inf")
    for _ in range(repeats):
        mixer = Mixer([list(items) for _ in range(inputs)], gains_db=[-6.0] * inputs)
        count = 0
        t0 = time.perf_counter()
        async for _ in Pipeline([mixer]).process():
            count += 1
        best = min(best, (time.perf_counter() - t0) / count)
    return best * 1e6


async def vad_accuracy(backend: str) -> tuple[float, float, int]:
    """Mean and max boundary error (ms) on a scene with known speech-like bursts, and segments."""
    os.environ["REMOTEMEDIA_RUNTIME"] = backend
    rate = 16000
    rng = np.random.default_rng(7)
    x = rng.normal(0, 0.001, 30 * rate)  # -60 dBFS floor
    truth, t = [], 0.4
    while t < 28.5:  # bursts of 0.2-1.5 s, pauses of 0.35-1.0 s, at -30 to -14 dBFS RMS
        length, level = rng.uniform(0.2, 1.5), 10 ** (rng.uniform(-30, -14) / 20)
        i, j = round(t * rate), round((t + length) * rate)
        n = np.arange(j - i)
        voiced = sum(np.sin(2 * np.pi * k * 150 * n / rate) / k for k in range(1, 6))
        burst = voiced * (0.6 + 0.4 * np.sin(2 * np.pi * 4 * n / rate)) * 0.7 + rng.normal(
            0, 0.3, n.size
        )
        x[i:j] += burst * level / np.sqrt(np.mean(burst**2))
        truth.append((i / rate, j / rate))
        t += length + rng.uniform(0.35, 1.0)
    frames_in = [
        AudioFrame(x[None, k : k + 320].astype(np.float32), rate, k) for k in range(0, x.size, 320)
    ]
    out = [o async for o in Pipeline([EnergyVAD()]).process(frames_in)]
    events = [o for o in out if isinstance(o, Event)]
    found = list(zip([e.time for e in events[::2]], [e.time for e in events[1::2]], strict=True))
    errors = [
        abs(a - b) * 1000
        for pair in zip(found, truth, strict=True)
        for a, b in zip(*pair, strict=True)
    ]
    return float(np.mean(errors)), float(np.max(errors)), len(found)


def silero_frames(count: int) -> list[AudioFrame]:
    """Speech-like syllables over -60 dBFS noise at 16 kHz, one 512-sample model window a frame."""
    window, rate = 512, 16000
    n = count * window
    x = np.random.default_rng(1).normal(0, 0.001, n) + speech_like(n / rate, seed=3, rate=rate)
    x32 = x[None, :].astype(np.float32)
    return [
        AudioFrame(np.ascontiguousarray(x32[:, i : i + window]), rate, i)
        for i in range(0, n, window)
    ]


async def silero(count: int, repeats: int) -> None:
    """SileroVAD on both backends, µs per 32 ms window, and the time to build each kernel."""
    try:
        path = model_path()
        import onnxruntime  # noqa: F401  (imported here, so the first build below times no import)

        from stream import _engine

        if not hasattr(_engine, "SileroVADKernel"):
            raise StreamError("engine built without the Silero kernel (cargo feature 'silero')")
    except (ImportError, StreamError) as exc:
        print(f"\nSileroVAD: skipped ({exc})")
        return
    modules: dict[str, Any] = {"python": media_nodes.audio, "rust": _engine}
    # The first kernel parses and optimizes the graph; the engine keeps that for the next ones.
    first = [_build_us(modules[b], path) / 1000 for b in BACKENDS]
    items = silero_frames(count)
    print(f"\n# SileroVAD: best of {repeats} runs of {count} windows of 512 samples at 16 kHz")
    print("\n| SileroVAD, per 32 ms window | onnxruntime (Python) | tract (Rust) | Python / Rust |")
    print("|---|---:|---:|---:|")

    def make(m: Any) -> Any:
        return m.SileroVADKernel(path)

    def call(k: Any, f: AudioFrame) -> Any:
        return k.process(f.samples, 16000)

    py, rs = (kernel_cost(make, call, items, b, repeats) for b in BACKENDS)
    print(f"| SileroVADKernel (bare loop), µs | {py:.1f} | {rs:.1f} | {py / rs:.2f}x |")
    py, rs = [await node_cost(lambda: SileroVAD(), items, b, repeats) for b in BACKENDS]
    print(f"| SileroVAD() node in a pipeline, µs | {py:.1f} | {rs:.1f} | {py / rs:.2f}x |")
    print(
        f"| first kernel built (loads the model), ms | {first[0]:.1f} | {first[1]:.1f} | {first[0] / first[1]:.2f}x |"
    )
    py, rs = (
        best_us(lambda b=b: _build_us(modules[b], path), max(3, repeats)) / 1000 for b in BACKENDS
    )
    print(f"| next kernel built, ms | {py:.1f} | {rs:.1f} | {py / rs:.2f}x |")


def _build_us(module: Any, path: str) -> float:
    t0 = time.perf_counter()
    module.SileroVADKernel(path)
    return (time.perf_counter() - t0) * 1e6


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a few frames, to prove it runs")
    args = parser.parse_args()
    count, repeats = (20, 1) if args.smoke else (500, 9)
    mono, stereo = frames(count), frames(count, channels=2)

    print(
        f"# stages_bench: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, engine {engine_version() or 'not built'}"
    )
    print(f"# best of {repeats} runs of {count} frames of 20 ms at 48 kHz; µs per frame\n")

    kernels: dict[
        str, tuple[Callable[[Any], Any], Callable[[Any, AudioFrame], Any], list[AudioFrame]]
    ] = {
        "LevelMeterKernel, mono": (
            lambda m: m.LevelMeterKernel(300.0),
            lambda k, f: k.process(f.samples, RATE),
            mono,
        ),
        "LevelMeterKernel, stereo": (
            lambda m: m.LevelMeterKernel(300.0),
            lambda k, f: k.process(f.samples, RATE),
            stereo,
        ),
        "EnergyVADKernel, mono": (
            lambda m: m.EnergyVADKernel(),
            lambda k, f: k.process(f.samples, RATE),
            mono,
        ),
        "EnergyVADKernel, stereo": (
            lambda m: m.EnergyVADKernel(),
            lambda k, f: k.process(f.samples, RATE),
            stereo,
        ),
        "MixKernel, 2 mono inputs": (
            lambda m: m.MixKernel([0.0, -6.0]),
            lambda k, f: k.process([f.samples, f.samples], 1, FRAME),
            mono,
        ),
        "MixKernel, 4 stereo inputs": (
            lambda m: m.MixKernel([0.0, -6.0, -3.0, 1.0]),
            lambda k, f: k.process([f.samples] * 4, 2, FRAME),
            stereo,
        ),
        "DenoiseKernel, mono": (
            lambda m: m.DenoiseKernel(),
            lambda k, f: k.process(f.samples, RATE),
            mono,
        ),
        "DenoiseKernel, stereo": (
            lambda m: m.DenoiseKernel(),
            lambda k, f: k.process(f.samples, RATE),
            stereo,
        ),
    }
    print("| kernel (bare loop) | Python | Rust | Python / Rust |")
    print("|---|---:|---:|---:|")
    for label, (make, call, items) in kernels.items():
        py, rs = (kernel_cost(make, call, items, b, repeats) for b in BACKENDS)
        print(f"| {label} | {py:.2f} | {rs:.2f} | {py / rs:.1f}x |")

    nodes: dict[str, tuple[Callable[[], Node], list[AudioFrame]]] = {
        "LevelMeter() (an event every 100 ms)": (lambda: LevelMeter(), mono),
        "EnergyVAD() (events)": (lambda: EnergyVAD(), mono),
        "EnergyVAD(gate=True)": (lambda: EnergyVAD(gate=True), mono),
        "Denoise()": (lambda: Denoise(), mono),
    }
    print("\n| node in a pipeline, per input frame | Python | Rust | Python / Rust |")
    print("|---|---:|---:|---:|")
    for label, (make_node, items) in nodes.items():
        py, rs = [await node_cost(make_node, items, b, repeats) for b in BACKENDS]
        print(f"| {label} | {py:.2f} | {rs:.2f} | {py / rs:.1f}x |")
    for inputs in (2, 4):
        py, rs = [await mixer_cost(inputs, mono, b, repeats) for b in BACKENDS]
        print(
            f"| Mixer, {inputs} ready mono inputs, per output frame | {py:.2f} | {rs:.2f} | {py / rs:.1f}x |"
        )

    if not args.smoke:
        print(
            "\n| EnergyVAD on 30 s of bursts over -60 dBFS noise | mean boundary error | max | segments found |"
        )
        print("|---|---:|---:|---:|")
        for b in BACKENDS:
            mean, worst, found = await vad_accuracy(b)
            print(f"| {b} | {mean:.1f} ms | {worst:.1f} ms | {found} |")
    await silero(count, repeats)
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
