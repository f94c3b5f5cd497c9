"""Resize: scales video frames to ``width`` x ``height``, keeping their pixel format.

The Rust kernel runs the ``fast_image_resize`` crate (6.1); this twin recomputes its integer
arithmetic in numpy: the same Pillow-style convolution weights (the filter widened by the scale
factor when shrinking), quantized to int16 at the same precision, summed in int32, the vertical
pass first and rounded to uint8, then the horizontal pass. 4:2:0 pictures are scaled plane by
plane. The two agree within one level (docs/stages-video.md).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from stream.errors import FormatError
from stream.frames import VideoFrame
from stream.stage_settings import Invalid, Setting, Settings

from .base import (
    YUV_FORMATS,
    Pixels,
    PyVideoKernel,
    VideoNode,
    join_planes,
    split_planes,
    video_frame_unchecked,
)

QUALITIES = ("nearest", "bilinear", "bicubic", "lanczos")
MAX_SIDE = 16384
Floats = npt.NDArray[np.float64]


def _side(name: str) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        try:
            n = operator.index(value)
        except TypeError:
            raise Invalid(f"{name} must be an int, got {value!r}") from None
        if not 1 <= n <= MAX_SIDE:
            raise Invalid(f"{name} must be an int from 1 to {MAX_SIDE}, got {n}")
        return n

    return check


def _quality(value: Any) -> str:
    if value is None:
        value = "bilinear"
    if not isinstance(value, str) or value not in QUALITIES:
        raise Invalid(f"quality must be one of {list(QUALITIES)}, got {value!r}")
    return value


SETTINGS = Settings(
    "Resize",
    Setting("width", "int", check=_side("width"), doc="output width, pixels"),
    Setting("height", "int", check=_side("height"), doc="output height, pixels"),
    Setting("quality", "str", "bilinear", _quality, doc="filter: " + ", ".join(QUALITIES)),
)


def check_settings(stage: str, width: Any, height: Any, quality: Any) -> tuple[int, int, str]:
    """Validated ``(width, height, quality)``; ConfigError naming ``stage`` otherwise."""
    v = SETTINGS.validate(
        stage, {"width": width, "height": height, "quality": quality}, kernel=True
    )
    return v["width"], v["height"], v["quality"]


# --------------------------------------------------------------------------- filters


def _bilinear(x: Floats) -> Floats:
    x = np.abs(x)
    return np.where(x < 1.0, 1.0 - x, 0.0)


def _catmull_rom(x: Floats) -> Floats:
    a = -0.5
    x = np.abs(x)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return np.where(x < 1.0, near, np.where(x < 2.0, far, 0.0))


def _sinc(x: Floats) -> Floats:
    px = x * math.pi
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(x == 0.0, 1.0, np.sin(px) / px)


def _lanczos3(x: Floats) -> Floats:
    inside = (x >= -3.0) & (x < 3.0)
    return np.where(inside, _sinc(x) * _sinc(x / 3.0), 0.0)


# name: (filter, support in pixels)
FILTERS: dict[str, tuple[Callable[[Floats], Floats], float]] = {
    "bilinear": (_bilinear, 1.0),
    "bicubic": (_catmull_rom, 2.0),
    "lanczos": (_lanczos3, 3.0),
}

PRECISION_BITS = 32 - 8 - 2  # the crate's: 8 bits of result, 2 of headroom, in an i32
MAX_COEFF = 1 << 15  # coefficients are i16


def _round_away(x: Floats) -> Floats:
    """Rust's ``f64::round``: halves away from zero (numpy's ``round`` goes to even)."""
    whole = np.trunc(x)
    return whole + np.where(np.abs(x - whole) >= 0.5, np.sign(x), 0.0)


class Weights:
    """Convolution weights of one axis: output ``i`` is ``sum_k q[i, k] * src[start[i] + k]``
    in fixed point with ``precision`` fractional bits (taps past the picture have weight 0)."""

    __slots__ = ("precision", "q", "start")

    def __init__(self, in_size: int, out_size: int, quality: str) -> None:
        fn, support = FILTERS[quality]
        scale = in_size / out_size
        filter_scale = max(scale, 1.0)
        radius = support * filter_scale
        window = math.ceil(radius) * 2 + 1
        recip = 1.0 / filter_scale
        in_center = 0.0 + (np.arange(out_size, dtype=np.float64) + 0.5) * scale
        x_min = np.maximum(np.floor(in_center - radius), 0.0).astype(np.int64)
        x_max = np.minimum(np.ceil(in_center + radius), float(in_size)).astype(np.int64)
        center = in_center - 0.5
        xs = x_min[:, None] + np.arange(window)[None, :]
        w = np.where(xs < x_max[:, None], fn((xs - center[:, None]) * recip), 0.0)
        total = np.zeros(out_size)
        for k in range(window):  # in order, as the crate sums them
            total = total + w[:, k]
        w = np.divide(w, total[:, None], out=w, where=total[:, None] != 0.0)
        top = float(w.max(initial=0.0))
        precision = 0
        for bits in range(PRECISION_BITS):
            precision = bits
            if _round_away(np.array(top * (1 << (bits + 1)))) >= MAX_COEFF:
                break
        taps = int((x_max - x_min).max())
        self.precision = precision
        self.q = _round_away(w[:, :taps] * float(1 << precision)).astype(np.int32)
        self.start = x_min

    def apply(self, src: Pixels, axis: int) -> Pixels:
        """Convolves ``src`` (rows, cols, components) along ``axis`` (0 or 1)."""
        size = src.shape[axis]
        out_shape = list(src.shape)
        out_shape[axis] = self.q.shape[0]
        acc = np.full(out_shape, 1 << (self.precision - 1), dtype=np.int32)
        for k in range(self.q.shape[1]):
            idx = np.minimum(self.start + k, size - 1)
            coeff = self.q[:, k]
            if axis == 0:
                acc += coeff[:, None, None] * src[idx]
            else:
                acc += coeff[None, :, None] * src[:, idx]
        out: Pixels = np.clip(acc >> self.precision, 0, 255).astype(np.uint8)
        return out


def _nearest(src: Pixels, width: int, height: int) -> Pixels:
    sh, sw = src.shape[:2]
    x_scale, y_scale = sw / width, sh / height
    x_start, y_start = 0.0 + x_scale * 0.5, 0.0 + y_scale * 0.5
    cols = np.minimum((x_start + x_scale * np.arange(width)).astype(np.int64), sw)
    # The crate steps the row position by repeated addition; accumulate reproduces it.
    steps = min(math.ceil(max((sh - y_start) / y_scale, 0.0)), height)
    ys = np.add.accumulate(np.concatenate([[y_start], np.full(steps - 1, y_scale)]))
    out = np.zeros((height, width, src.shape[2]), np.uint8)
    out[:steps] = src[ys.astype(np.int64)][:, cols]
    return out


def resize_plane(src: Pixels, width: int, height: int, quality: str) -> Pixels:
    """One plane ``(rows, cols, components)`` scaled to ``(height, width, components)``."""
    sh, sw = src.shape[:2]
    if (sw, sh) == (width, height):
        return src.copy()
    if quality == "nearest":
        return _nearest(src, width, height)
    out = src
    if sh != height:  # vertical first, as the crate does for u8 pictures
        out = Weights(sh, height, quality).apply(out, 0)
    if sw != width:
        out = Weights(sw, width, quality).apply(out, 1)
    return out


class ResizeKernel(PyVideoKernel):
    """Python twin of ``stream._engine.ResizeKernel`` (docs/stages-video.md)."""

    def __init__(
        self, width: int, height: int, quality: str = "bilinear", *, stage: str = "resize"
    ) -> None:
        super().__init__(stage=stage)
        self.width, self.height, self.quality = check_settings(stage, width, height, quality)

    def process(self, pixels: Any, format: Any) -> Pixels:
        fmt, sw, sh, src = self.read(pixels, format)
        w, h = self.width, self.height
        if fmt in YUV_FORMATS and (w % 2 or h % 2):
            raise self.error(
                FormatError,
                f"cannot resize {fmt} to {w}x{h}: 4:2:0 needs an even width and height",
            )
        planes = split_planes(fmt, src, sw, sh)
        sizes = [(w, h)] + [(w // 2, h // 2)] * (len(planes) - 1)
        out = [
            resize_plane(plane, pw, ph, self.quality)
            for plane, (pw, ph) in zip(planes, sizes, strict=True)
        ]
        return join_planes(fmt, out, w, h)


class Resize(VideoNode):
    """Scale video frames to ``width`` x ``height`` pixels with the ``quality`` filter:
    ``nearest``, ``bilinear`` (default), ``bicubic`` (Catmull-Rom) or ``lanczos`` (3 lobes).

    Keeps the pixel format, pts and time_base; 4:2:0 formats need an even target size
    (FormatError). Raises ConfigError for bad settings.
    """

    native_kernel = "ResizeKernel"
    python_kernel = ResizeKernel
    settings = SETTINGS
    width: int
    height: int
    quality: str

    def __init__(
        self,
        width: int,
        height: int,
        quality: str = "bilinear",
        *,
        name: str | None = None,
        backend: str | None = None,
    ) -> None:
        super().__init__(name=name, backend=backend)
        self.configure(width=width, height=height, quality=quality)

    def process_video(self, frame: VideoFrame) -> list[Any]:
        pixels = self._kernel.process(frame.pixels, frame.format)
        return [video_frame_unchecked(pixels, frame.format, frame)]


__all__ = ["QUALITIES", "Resize", "ResizeKernel", "Weights", "resize_plane"]
