"""What the video stages share: the node base class, the picture checks of the Python twins and
the plane layout of 4:2:0 pictures (docs/stages-video.md is the contract).

Pictures are uint8 arrays as PyAV's ``to_ndarray`` lays them out: rgb24/bgr24
``(height, width, 3)``, gray ``(height, width)``, yuv420p and nv12 ``(height * 3 // 2, width)``
holding the Y plane, then the U and V planes (yuv420p, each ``(height / 2, width / 2)``) or one
interleaved UV plane (nv12).
"""

from __future__ import annotations

import operator
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from stream.errors import FormatError, StreamError
from stream.frames import PIXEL_LAYOUTS, AudioFrame, VideoFrame, picture_problem, timing_problem
from stream.kernel_node import KernelNode

Pixels = npt.NDArray[np.uint8]

LAYOUTS = PIXEL_LAYOUTS
YUV_FORMATS = ("yuv420p", "nv12")


def stage_error(cls: type[StreamError], stage: str, message: str) -> StreamError:
    """An error of ``cls`` naming ``stage``, as the engine raises it."""
    return cls(message, stage=stage)


def shape_of(fmt: str, width: int, height: int) -> tuple[int, ...]:
    """The array shape of a ``width`` x ``height`` picture in ``fmt``."""
    if fmt in ("rgb24", "bgr24"):
        return (height, width, 3)
    if fmt == "gray":
        return (height, width)
    return (height * 3 // 2, width)


class PyVideoKernel:
    """Shared checks of the Python twins of the picture kernels."""

    def __init__(self, *, stage: str) -> None:
        self.stage = stage

    def error(self, cls: type[StreamError], message: str) -> StreamError:
        return stage_error(cls, self.stage, message)

    def read(self, pixels: Any, src_format: Any) -> tuple[str, int, int, Pixels]:
        """Checks in the contract's order; returns ``(format, width, height, C-contiguous)``."""
        problem = picture_problem(pixels, src_format)
        if problem is not None:
            raise self.error(FormatError, problem)
        fmt: str = src_format
        height, width = pixels.shape[:2]
        if fmt in YUV_FORMATS:
            height = height // 3 * 2
        return fmt, width, height, np.ascontiguousarray(pixels)


def split_planes(fmt: str, pixels: Pixels, width: int, height: int) -> list[Pixels]:
    """The planes of a picture as ``(rows, cols, components)`` views: one plane for
    rgb24/bgr24/gray; Y, U, V for yuv420p; Y, UV for nv12."""
    if fmt in ("rgb24", "bgr24"):
        return [pixels]
    if fmt == "gray":
        return [pixels[:, :, None]]
    flat = pixels.reshape(-1)
    luma = width * height
    y = flat[:luma].reshape(height, width, 1)
    ch, cw = height // 2, width // 2
    if fmt == "nv12":
        return [y, flat[luma:].reshape(ch, cw, 2)]
    chroma = ch * cw
    return [
        y,
        flat[luma : luma + chroma].reshape(ch, cw, 1),
        flat[luma + chroma :].reshape(ch, cw, 1),
    ]


def join_planes(fmt: str, planes: list[Pixels], width: int, height: int) -> Pixels:
    """A picture array from the planes ``split_planes`` gives."""
    if len(planes) == 1:
        return np.ascontiguousarray(planes[0].reshape(shape_of(fmt, width, height)))
    flat = np.concatenate([p.reshape(-1) for p in planes])
    return flat.reshape(shape_of(fmt, width, height))


def check_video(stage: str, item: Any) -> VideoFrame | None:
    """The frame if it is video that holds what a VideoFrame may hold (stream.frames); None for
    audio, which video stages pass on untouched; a FormatError naming ``stage`` otherwise (frames
    are mutable: this is the stage's own look at what it was handed)."""
    if isinstance(item, VideoFrame):
        problem = picture_problem(item.pixels, item.format) or timing_problem(
            item.pts, item.time_base
        )
        if problem is not None:
            raise stage_error(FormatError, stage, problem)
        if item.pts is not None and type(item.pts) is not int:
            item.pts = operator.index(item.pts)  # a numpy integer: a plain int, as constructed
        return item
    if isinstance(item, AudioFrame):
        return None
    raise stage_error(FormatError, stage, f"expected a VideoFrame, got {type(item).__name__}")


def video_frame_unchecked(
    pixels: Pixels, fmt: str, like: VideoFrame, pts: int | None = None
) -> VideoFrame:
    """A VideoFrame with ``like``'s timing (or ``pts``), without validation: for stages whose
    kernels built ``pixels`` in ``fmt``'s layout."""
    frame = object.__new__(VideoFrame)
    frame.pixels = pixels
    frame.format = fmt
    frame.pts = like.pts if pts is None else pts
    frame.time_base = like.time_base
    return frame


class VideoNode(KernelNode):
    """A built-in video stage with a Rust kernel and a Python twin of the same name.

    It is a ``KernelNode`` so backend selection (``backend=``, ``REMOTEMEDIA_RUNTIME``,
    ``Pipeline.run(use_rust=False)``) works as for audio stages; it is never fused into a native
    audio chain. Audio frames pass through untouched; events flow around it (stream.events).
    Subclasses implement ``process_video``.
    """

    fusable: ClassVar[bool] = False

    def process(self, frame: Any) -> list[Any]:
        video = check_video(self.name, frame)
        if video is None:
            return [frame]
        return self.process_video(video)

    def process_video(self, frame: VideoFrame) -> list[Any]:
        raise NotImplementedError

    def flush(self) -> list[Any]:
        return []

    def cleanup(self) -> None:
        return None  # the picture kernels are stateless


__all__ = [
    "LAYOUTS",
    "YUV_FORMATS",
    "PyVideoKernel",
    "VideoNode",
    "check_video",
    "join_planes",
    "shape_of",
    "split_planes",
    "stage_error",
    "video_frame_unchecked",
]
