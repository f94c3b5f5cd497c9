"""Built-in video stages: each has a Rust kernel and a Python twin (docs/stages-video.md).

Audio frames pass through them untouched and events flow around them, so they sit in audio and
video streams alike.
"""

from .base import VideoNode
from .color_convert import ColorConvert, ColorConvertKernel
from .frame_rate import FrameRate, FrameRateKernel
from .grayscale import Grayscale, GrayscaleKernel
from .resize import Resize, ResizeKernel

__all__ = [
    "ColorConvert",
    "ColorConvertKernel",
    "FrameRate",
    "FrameRateKernel",
    "Grayscale",
    "GrayscaleKernel",
    "Resize",
    "ResizeKernel",
    "VideoNode",
]
