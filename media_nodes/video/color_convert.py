"""ColorConvert: moves video frames between pixel formats (rgb24, bgr24, gray, yuv420p, nv12).

BT.601, limited range for YUV (Y 16..235, chroma 16..240: what ffmpeg's swscale assumes for
untagged video), full range for gray (as swscale treats ``gray``). Integer arithmetic in Q16 fixed
point with the constants below, identical in the Rust kernel, so both backends give the same
bytes. A 4:2:0 target's chroma is the rounded mean of each 2x2 block; a 4:2:0 source's chroma is
repeated over its 2x2 block (docs/stages-video.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from stream.errors import FormatError
from stream.frames import PIXEL_FORMATS, VideoFrame
from stream.stage_settings import Setting, Settings, one_of

from .base import YUV_FORMATS, Pixels, PyVideoKernel, VideoNode, video_frame_unchecked

Ints = npt.NDArray[np.int32]

# RGB -> Y (limited): 219/255 * (0.299, 0.587, 0.114), Q16.
Y_R, Y_G, Y_B = 16829, 33039, 6416
# RGB -> Cb, Cr: 224/255 * BT.601 rows, Q16; G adjusted so each row sums to 0 (greys -> 128).
U_R, U_G, U_B = -9714, -19070, 28784
V_R, V_G, V_B = 28784, -24103, -4681
# YUV -> RGB: 255/219, and 1.402, 0.344136, 0.714136, 1.772 times 255/224, Q16.
C_Y, C_RV, C_GU, C_GV, C_BU = 76309, 104597, 25675, 53279, 132201
# RGB -> gray (full range): 0.299, 0.587, 0.114 in Q16, summing to 65536.
G_R, G_G, G_B = 19595, 38470, 7471
Y_GRAY = Y_R + Y_G + Y_B  # gray -> Y: 219/255
HALF = 1 << 15


SETTINGS = Settings(
    "ColorConvert",
    Setting("format", "str", check=one_of("format", PIXEL_FORMATS), doc="output pixel format"),
)


def check_format(stage: str, fmt: Any) -> str:
    """``fmt`` if it names a supported pixel format; ConfigError naming ``stage`` otherwise."""
    result: str = SETTINGS["format"].validate(stage, fmt)
    return result


def _u8(values: Ints) -> Pixels:
    return np.clip(values, 0, 255).astype(np.uint8)


def _rgb(fmt: str, pixels: Pixels) -> tuple[Ints, Ints, Ints]:
    """R, G, B planes (int32) of an rgb24/bgr24 picture."""
    p = pixels.astype(np.int32)
    first, green, last = p[..., 0], p[..., 1], p[..., 2]
    return (last, green, first) if fmt == "bgr24" else (first, green, last)


def _pack_rgb(fmt: str, r: Pixels, g: Pixels, b: Pixels) -> Pixels:
    return np.stack((b, g, r) if fmt == "bgr24" else (r, g, b), axis=-1)


def _yuv_planes(fmt: str, pixels: Pixels, w: int, h: int) -> tuple[Pixels, Pixels, Pixels]:
    """Y ``(h, w)``, U and V ``(h/2, w/2)`` of a 4:2:0 picture."""
    flat = pixels.reshape(-1)
    luma, chroma = w * h, w * h // 4
    y = flat[:luma].reshape(h, w)
    if fmt == "nv12":
        uv = flat[luma:].reshape(h // 2, w // 2, 2)
        return y, uv[..., 0], uv[..., 1]
    u = flat[luma : luma + chroma].reshape(h // 2, w // 2)
    return y, u, flat[luma + chroma :].reshape(h // 2, w // 2)


def _pack_420(fmt: str, y: Pixels, u: Pixels, v: Pixels) -> Pixels:
    h, w = y.shape
    chroma = np.stack((u, v), axis=-1) if fmt == "nv12" else np.stack((u, v))
    flat = np.concatenate((y.reshape(-1), chroma.reshape(-1)))
    return flat.reshape(h * 3 // 2, w)


def rgb_to_gray(fmt: str, pixels: Pixels) -> Pixels:
    r, g, b = _rgb(fmt, pixels)
    return ((G_R * r + G_G * g + G_B * b + HALF) >> 16).astype(np.uint8)


def rgb_to_420(fmt: str, pixels: Pixels, to: str) -> Pixels:
    r, g, b = _rgb(fmt, pixels)
    y = ((Y_R * r + Y_G * g + Y_B * b + (16 << 16) + HALF) >> 16).astype(np.uint8)

    def block_sum(c: Ints) -> Ints:
        return c[0::2, 0::2] + c[0::2, 1::2] + c[1::2, 0::2] + c[1::2, 1::2]

    sr, sg, sb = block_sum(r), block_sum(g), block_sum(b)
    rnd = (128 << 18) + (1 << 17)
    u = _u8((U_R * sr + U_G * sg + U_B * sb + rnd) >> 18)
    v = _u8((V_R * sr + V_G * sg + V_B * sb + rnd) >> 18)
    return _pack_420(to, y, u, v)


def yuv_to_rgb(fmt: str, pixels: Pixels, w: int, h: int, to: str) -> Pixels:
    y, u, v = _yuv_planes(fmt, pixels, w, h)
    c = C_Y * (y.astype(np.int32) - 16) + HALF
    d = np.repeat(np.repeat(u.astype(np.int32) - 128, 2, axis=0), 2, axis=1)
    e = np.repeat(np.repeat(v.astype(np.int32) - 128, 2, axis=0), 2, axis=1)
    r = _u8((c + C_RV * e) >> 16)
    g = _u8((c - C_GU * d - C_GV * e) >> 16)
    b = _u8((c + C_BU * d) >> 16)
    return _pack_rgb(to, r, g, b)


def gray_of_luma(y: Pixels) -> Pixels:
    return _u8((C_Y * (y.astype(np.int32) - 16) + HALF) >> 16)


def gray_to(pixels: Pixels, to: str) -> Pixels:
    if to in ("rgb24", "bgr24"):
        return np.repeat(pixels[:, :, None], 3, axis=2)
    y = ((Y_GRAY * pixels.astype(np.int32) + (16 << 16) + HALF) >> 16).astype(np.uint8)
    neutral = np.full((y.shape[0] // 2, y.shape[1] // 2), 128, np.uint8)
    return _pack_420(to, y, neutral, neutral)


def convert(fmt: str, pixels: Pixels, w: int, h: int, to: str) -> Pixels:
    """A checked picture in ``fmt`` converted to ``to`` (the target size check already done)."""
    rgb = ("rgb24", "bgr24")
    if fmt == to:
        return pixels.copy()
    if fmt in rgb:
        if to in rgb:
            return np.ascontiguousarray(pixels[..., ::-1])
        if to == "gray":
            return rgb_to_gray(fmt, pixels)
        return rgb_to_420(fmt, pixels, to)
    if fmt in YUV_FORMATS:
        if to in rgb:
            return yuv_to_rgb(fmt, pixels, w, h, to)
        y, u, v = _yuv_planes(fmt, pixels, w, h)
        if to == "gray":
            return gray_of_luma(y)
        return _pack_420(to, y, u, v)
    return gray_to(pixels, to)


class ColorConvertKernel(PyVideoKernel):
    """Python twin of ``stream._engine.ColorConvertKernel`` (docs/stages-video.md)."""

    def __init__(self, format: str, *, stage: str = "color_convert") -> None:
        super().__init__(stage=stage)
        self.format: str = SETTINGS.validate(stage, {"format": format}, kernel=True)["format"]

    def process(self, pixels: Any, src_format: Any) -> Pixels:
        fmt, w, h, src = self.read(pixels, src_format)
        to = self.format
        if to in YUV_FORMATS and (w % 2 or h % 2):
            raise self.error(
                FormatError,
                f"cannot convert a {w}x{h} picture to {to}: 4:2:0 needs an even width and height",
            )
        return convert(fmt, src, w, h, to)


class ColorConvert(VideoNode):
    """Convert video frames to pixel ``format`` (rgb24, bgr24, gray, yuv420p or nv12).

    BT.601; YUV in limited range, gray in full range. Keeps pts and time_base. A 4:2:0 target
    needs an even picture size (FormatError). Raises ConfigError for an unknown format.
    """

    native_kernel = "ColorConvertKernel"
    python_kernel = ColorConvertKernel
    settings = SETTINGS
    format: str

    def __init__(self, format: str, *, name: str | None = None, backend: str | None = None) -> None:
        super().__init__(name=name, backend=backend)
        self.configure(format=format)

    def process_video(self, frame: VideoFrame) -> list[Any]:
        pixels = self._kernel.process(frame.pixels, frame.format)
        return [video_frame_unchecked(pixels, self.format, frame)]


__all__ = ["ColorConvert", "ColorConvertKernel", "convert"]
