"""Video benchmark: per-frame cost of each video stage at 640x480 and 1280x720, on the Rust kernel,
on its Python twin (numpy) and, for reference, PyAV's swscale doing the same through
``VideoFrame.reformat`` (ndarray in, ndarray out, as the stages take them). Also a camera-like
pipeline (nv12 720p -> Resize(640x360) -> ColorConvert(rgb24)) through ``Pipeline`` on each
backend, and FrameRate's per-frame cost. Every number is from this one run; ratios compare
columns of it.

    python benchmarks/video_bench.py            # full run; copy the output into docs/stages-video.md
    python benchmarks/video_bench.py --smoke    # a frame or two: proves it runs (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import time
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av
import numpy as np

import media_nodes.video as twins
from media_nodes.video import ColorConvert, FrameRate, Resize
from stream import Pipeline, VideoFrame, engine_version
from stream import _engine as engine

SIZES = [(640, 480), (1280, 720)]
REPEATS = 5  # best-of, to keep bursts of other load out of the figures


def picture(fmt: str, width: int, height: int) -> np.ndarray:
    """A smooth test picture (gradients plus mild noise) in ``fmt``, made by swscale."""
    rng = np.random.default_rng(0)
    x = np.linspace(0, 255, width)[None, :]
    y = np.linspace(0, 255, height)[:, None]
    rgb = np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], -1) + rng.normal(0, 8, (height, width, 3))
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    if fmt == "rgb24":
        return rgb
    return av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=fmt).to_ndarray()


def best_us(fn: Callable[[], Any], frames: int) -> float:
    """Best-of-REPEATS microseconds per call of ``fn``, ``frames`` calls per run."""
    fn()  # warm up (allocations, first-call costs)
    best = float("inf")
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        for _ in range(frames):
            fn()
        best = min(best, time.perf_counter() - t0)
    return best / frames * 1e6


def swscale(pixels: np.ndarray, fmt: str, **reformat: Any) -> Callable[[], np.ndarray]:
    def run() -> np.ndarray:
        frame = av.VideoFrame.from_ndarray(pixels, format=fmt)
        return frame.reformat(**reformat).to_ndarray()

    return run


def cases(width: int, height: int) -> list[tuple[str, str, Any, Any, dict[str, Any] | None]]:
    """(label, input format, rust kernel, python twin, reformat arguments for swscale)."""
    half = (width // 2, height // 2)
    out: list[tuple[str, str, Any, Any, dict[str, Any] | None]] = []
    for fmt in ("rgb24", "yuv420p"):
        for quality, interp in (("bilinear", "BILINEAR"), ("lanczos", "LANCZOS")):
            out.append(
                (
                    f"Resize {fmt} -> {half[0]}x{half[1]} {quality}",
                    fmt,
                    engine.ResizeKernel(*half, quality),
                    twins.ResizeKernel(*half, quality),
                    {"width": half[0], "height": half[1], "interpolation": interp},
                )
            )
    out.append(
        (
            "Resize nv12 -> 1920x1080 bilinear",
            "nv12",
            engine.ResizeKernel(1920, 1080),
            twins.ResizeKernel(1920, 1080),
            {"width": 1920, "height": 1080, "interpolation": "BILINEAR"},
        )
    )
    for src, dst in (
        ("rgb24", "yuv420p"),
        ("yuv420p", "rgb24"),
        ("nv12", "rgb24"),
        ("bgr24", "nv12"),
    ):
        reformat: dict[str, Any] = {"format": dst}
        if src == "nv12":
            reformat["interpolation"] = "POINT"  # chroma repeated, as ours
        out.append(
            (
                f"ColorConvert {src} -> {dst}",
                src,
                engine.ColorConvertKernel(dst),
                twins.ColorConvertKernel(dst),
                reformat,
            )
        )
    for src in ("rgb24", "yuv420p"):
        out.append(
            (
                f"Grayscale {src}",
                src,
                engine.GrayscaleKernel(),
                twins.GrayscaleKernel(),
                {"format": "gray"},
            )
        )
    return out


def kernel_table(frames: int) -> None:
    print(
        f"{'stage':<40} {'size':>9} {'rust':>9} {'python':>9} {'pyav':>9} {'py/rust':>8} {'pyav/rust':>9}"
    )
    for width, height in SIZES:
        for label, fmt, rs, py, reformat in cases(width, height):
            pixels = picture(fmt, width, height)
            t_rs = best_us(lambda rs=rs, p=pixels, f=fmt: rs.process(p, f), frames)
            t_py = best_us(lambda py=py, p=pixels, f=fmt: py.process(p, f), frames)
            t_av = best_us(swscale(pixels, fmt, **reformat), frames) if reformat else float("nan")
            print(
                f"{label:<40} {width:>4}x{height:<4} {t_rs:>9.0f} {t_py:>9.0f} {t_av:>9.0f}"
                f" {t_py / t_rs:>7.1f}x {t_av / t_rs:>8.1f}x"
            )
    print("us per frame, best of", REPEATS, "runs; pyav: from_ndarray + reformat + to_ndarray")


async def pipeline_us(backend: str, items: list[VideoFrame]) -> float:
    os.environ["REMOTEMEDIA_RUNTIME"] = backend
    best = float("inf")
    for _ in range(REPEATS):
        pipeline = Pipeline([Resize(640, 360), ColorConvert("rgb24")])
        async with pipeline:
            t0 = time.perf_counter()
            async for _ in pipeline.process(items):
                pass
            best = min(best, time.perf_counter() - t0)
    return best / len(items) * 1e6


def frame_rate_us(backend: str, items: list[VideoFrame]) -> float:
    os.environ["REMOTEMEDIA_RUNTIME"] = backend

    def run() -> None:
        node = FrameRate(Fraction(30000, 1001))
        node.initialize()
        for frame in items:
            node.process(frame)
        node.flush()

    return best_us(run, 1) / len(items)


async def main(smoke: bool) -> None:
    global REPEATS
    frames = 1 if smoke else 10
    REPEATS = 1 if smoke else REPEATS
    print(
        f"# video benchmark: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {sys.version.split()[0]}, engine {engine_version()}, numpy {np.__version__}, "
        f"PyAV {av.__version__}"
    )
    print("\n## Kernels, us per frame")
    kernel_table(frames)

    count = 3 if smoke else 60
    cam = picture("nv12", 1280, 720)
    items = [VideoFrame(cam, "nv12", i * 3000, Fraction(1, 90000)) for i in range(count)]
    print("\n## Pipeline: nv12 1280x720 > Resize(640x360) > ColorConvert(rgb24), us per frame")
    py = await pipeline_us("python", items)
    rs = await pipeline_us("rust", items)
    print(f"python {py:.0f}   rust {rs:.0f}   python/rust {py / rs:.1f}x")

    timed = [
        VideoFrame(cam[:6, :4], "nv12", i * 3000, Fraction(1, 90000)) for i in range(count * 10)
    ]
    print("\n## FrameRate 30 -> 30000/1001 fps, us per input frame (node + kernel)")
    py_fr, rs_fr = frame_rate_us("python", timed), frame_rate_us("rust", timed)
    print(f"python {py_fr:.2f}   rust {rs_fr:.2f}   python/rust {py_fr / rs_fr:.1f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a frame or two, to prove it runs")
    asyncio.run(main(parser.parse_args().smoke))
