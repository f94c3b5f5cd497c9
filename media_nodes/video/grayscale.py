"""Grayscale: video frames to ``gray`` (full-range BT.601 luma), from any supported format.

The same arithmetic as ``ColorConvert(format="gray")`` (docs/stages-video.md): from RGB
``(19595 R + 38470 G + 7471 B + 32768) >> 16``; from YUV the limited-range Y expanded to full range.
"""

from __future__ import annotations

from typing import Any

from stream.frames import VideoFrame
from stream.stage_settings import Settings

from .base import Pixels, PyVideoKernel, VideoNode, video_frame_unchecked
from .color_convert import convert

SETTINGS = Settings("Grayscale")  # nothing to set


class GrayscaleKernel(PyVideoKernel):
    """Python twin of ``stream._engine.GrayscaleKernel`` (docs/stages-video.md)."""

    format = "gray"

    def __init__(self, *, stage: str = "grayscale") -> None:
        super().__init__(stage=stage)

    def process(self, pixels: Any, src_format: Any) -> Pixels:
        fmt, w, h, src = self.read(pixels, src_format)
        return convert(fmt, src, w, h, "gray")


class Grayscale(VideoNode):
    """Convert video frames to gray (luma, full range 0..255). Keeps pts and time_base."""

    native_kernel = "GrayscaleKernel"
    python_kernel = GrayscaleKernel
    settings = SETTINGS

    def __init__(self, *, name: str | None = None, backend: str | None = None) -> None:
        super().__init__(name=name, backend=backend)
        self.configure()

    def process_video(self, frame: VideoFrame) -> list[Any]:
        pixels = self._kernel.process(frame.pixels, frame.format)
        return [video_frame_unchecked(pixels, "gray", frame)]


__all__ = ["Grayscale", "GrayscaleKernel"]
