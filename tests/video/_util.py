"""Generated pictures and helpers of the video stage tests (docs/stages-video.md).

Pictures are made with numpy alone (gradients, checkerboards, noise, smooth "natural-ish"
content); other formats come from PyAV's swscale, independent of the code under test.
"""

from __future__ import annotations

import importlib
from fractions import Fraction
from types import ModuleType

import av
import numpy as np
import numpy.typing as npt

from stream.frames import PIXEL_FORMATS, VideoFrame

Pixels = npt.NDArray[np.uint8]
FORMATS = list(PIXEL_FORMATS)
RGB_FORMATS = ["rgb24", "bgr24"]
YUV_FORMATS = ["yuv420p", "nv12"]
QUALITIES = ["nearest", "bilinear", "bicubic", "lanczos"]

# Tolerances from docs/stages-video.md.
RESIZE_PARITY_MAX = 1  # Rust vs Python twin, any picture (measured: identical)
# vs PyAV's swscale (reformat), on smooth pictures (features about 16 px across):
SWSCALE_RESIZE_MAX, SWSCALE_RESIZE_MEAN = 6, 0.5  # same filter name (measured: max 5, mean 0.37)
SWSCALE_LUMA_MAX = 1  # rgb -> Y or gray, any picture
SWSCALE_CHROMA_MAX, SWSCALE_CHROMA_MEAN = 3, 0.1  # rgb -> yuv420p/nv12, all planes
SWSCALE_TO_RGB_MAX, SWSCALE_TO_RGB_MEAN = 3, 1.5  # yuv -> rgb, chroma repeated (POINT)


def kernel_module(backend: str) -> ModuleType:
    """Where a backend's kernel classes live: ``stream._engine`` or the Python twins."""
    if backend == "rust":
        return importlib.import_module("stream._engine")
    return importlib.import_module("media_nodes.video")


def shape_of(fmt: str, width: int, height: int) -> tuple[int, ...]:
    if fmt in RGB_FORMATS:
        return (height, width, 3)
    if fmt == "gray":
        return (height, width)
    return (height * 3 // 2, width)


def noise(fmt: str, width: int, height: int, seed: int = 0) -> Pixels:
    """Uniform random bytes: valid in every format."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, shape_of(fmt, width, height), dtype=np.uint8)


def gradient_rgb(width: int, height: int) -> Pixels:
    """R ramps left to right, G top to bottom, B along the diagonal."""
    x = np.linspace(0, 255, width)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height)[:, None].repeat(width, 1)
    return np.stack([x, y, (x + y) / 2], axis=-1).round().astype(np.uint8)


def checkerboard_rgb(width: int, height: int, cell: int = 8) -> Pixels:
    yy, xx = np.indices((height, width))
    on = ((yy // cell + xx // cell) % 2).astype(bool)
    out = np.zeros((height, width, 3), np.uint8)
    out[on] = (230, 40, 90)
    out[~on] = (20, 200, 160)
    return out


def smooth_rgb(width: int, height: int, cell: int = 16, seed: int = 0) -> Pixels:
    """Natural-ish content: random colours on a coarse grid, linearly interpolated (features
    about ``cell`` pixels across)."""
    rng = np.random.default_rng(seed)
    gh, gw = height // cell + 2, width // cell + 2
    grid = rng.uniform(0, 255, (gh, gw, 3))
    ys = np.linspace(0, gh - 1, height)
    xs = np.linspace(0, gw - 1, width)
    rows = np.stack(
        [
            np.stack([np.interp(xs, np.arange(gw), grid[r, :, c]) for c in range(3)], -1)
            for r in range(gh)
        ]
    )
    out = np.empty((height, width, 3))
    for c in range(3):
        for x in range(width):
            out[:, x, c] = np.interp(ys, np.arange(gh), rows[:, x, c])
    return out.round().astype(np.uint8)


def av_convert(pixels: Pixels, src: str, dst: str) -> Pixels:
    """``pixels`` converted by PyAV's swscale (the reference, not the code under test)."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format=src)
    return frame.reformat(format=dst).to_ndarray()


def av_to_rgb(pixels: Pixels, src: str, dst: str) -> Pixels:
    """swscale's YUV -> RGB with each chroma sample repeated over its 2x2 block, as ours does.

    swscale's own default is not consistent: yuv420p -> rgb24 takes an unscaled path that
    repeats chroma, nv12 -> rgb24 goes through the scaler and interpolates it; ``POINT`` makes
    both repeat."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format=src)
    return frame.reformat(format=dst, interpolation="POINT").to_ndarray()


def av_resize(pixels: Pixels, fmt: str, width: int, height: int, interpolation: str) -> Pixels:
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format=fmt)
    return frame.reformat(width=width, height=height, interpolation=interpolation).to_ndarray()


def picture(fmt: str, width: int, height: int, kind: str = "smooth", seed: int = 0) -> Pixels:
    """A picture of ``kind`` (smooth, gradient, checkerboard, noise) in ``fmt``."""
    if kind == "noise":
        return noise(fmt, width, height, seed)
    make = {"smooth": smooth_rgb, "gradient": gradient_rgb, "checkerboard": checkerboard_rgb}
    rgb = make[kind](width, height) if kind != "smooth" else smooth_rgb(width, height, seed=seed)
    return rgb if fmt == "rgb24" else av_convert(rgb, "rgb24", fmt)


def frames(
    fmt: str, width: int, height: int, count: int, fps: int = 30, first_pts: int = 0
) -> list[VideoFrame]:
    """``count`` noise frames at ``fps``, pts counted in frames."""
    tb = Fraction(1, fps)
    return [
        VideoFrame(noise(fmt, width, height, seed=i), fmt, first_pts + i, tb) for i in range(count)
    ]


def diff(a: Pixels, b: Pixels) -> tuple[int, float]:
    """(max, mean) absolute difference."""
    assert a.shape == b.shape, (a.shape, b.shape)
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return int(d.max()), float(d.mean())
