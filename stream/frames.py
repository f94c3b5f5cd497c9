"""Media frames: a numpy payload plus timing (``pts`` in units of ``time_base`` seconds).

Audio stages work on float32 planar blocks of shape ``(channels, samples)``; ``AudioFrame`` can
also hold int16 and interleaved ``(samples, channels)`` data, named as PyAV names sample formats
(``fltp``, ``flt``, ``s16p``, ``s16``), so edges (devices, files, sockets) can use theirs and
``FormatConvert`` moves between them. Each type converts to and from PyAV with one function.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from .errors import FormatError

if TYPE_CHECKING:
    import av

SampleFormat = Literal["fltp", "flt", "s16p", "s16"]
SAMPLE_FORMATS: dict[str, tuple[type[np.generic], bool]] = {
    # name: (dtype, planar)
    "fltp": (np.float32, True),
    "flt": (np.float32, False),
    "s16p": (np.int16, True),
    "s16": (np.int16, False),
}
PixelFormat = Literal["rgb24", "bgr24", "gray", "yuv420p", "nv12"]
PIXEL_FORMATS: tuple[str, ...] = ("rgb24", "bgr24", "gray", "yuv420p", "nv12")


def sample_format_of(samples: npt.NDArray[Any], planar: bool) -> str:
    """The PyAV name of an array's sample format; raises FormatError for other dtypes."""
    if samples.dtype == np.float32:
        return "fltp" if planar else "flt"
    if samples.dtype == np.int16:
        return "s16p" if planar else "s16"
    raise FormatError(f"unsupported sample dtype {samples.dtype}; use float32 or int16")


@dataclass(slots=True, eq=False)
class AudioFrame:
    """A block of audio.

    ``samples``: float32 (or int16) array, ``(channels, samples)`` when ``planar`` (the default and
    what stages take), ``(samples, channels)`` when not. ``sample_rate`` in Hz. ``pts`` counts
    ``time_base`` seconds; both are None for untimed audio. Raises FormatError on a bad array.
    """

    samples: npt.NDArray[Any]
    sample_rate: int
    pts: int | None = None
    time_base: Fraction | None = None
    planar: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.samples, np.ndarray):
            raise FormatError(f"AudioFrame samples must be a numpy array, got {type(self.samples)}")
        if self.samples.ndim != 2:
            layout = "(channels, samples)" if self.planar else "(samples, channels)"
            raise FormatError(
                f"AudioFrame samples must be 2-D {layout}, got shape {self.samples.shape}"
            )
        sample_format_of(self.samples, self.planar)
        if not isinstance(self.sample_rate, int | np.integer) or self.sample_rate <= 0:
            raise FormatError(
                f"AudioFrame sample_rate must be a positive int, got {self.sample_rate!r}"
            )
        if self.pts is not None and self.time_base is None:
            self.time_base = Fraction(1, int(self.sample_rate))

    @property
    def format(self) -> str:
        """Sample format name as PyAV spells it: fltp, flt, s16p or s16."""
        return sample_format_of(self.samples, self.planar)

    @property
    def channels(self) -> int:
        return int(self.samples.shape[0 if self.planar else 1])

    @property
    def num_samples(self) -> int:
        return int(self.samples.shape[1 if self.planar else 0])

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.num_samples / self.sample_rate

    @property
    def time(self) -> float | None:
        """Start time in seconds, or None when untimed."""
        if self.pts is None or self.time_base is None:
            return None
        return float(self.pts * self.time_base)

    @classmethod
    def from_av(cls, frame: av.AudioFrame) -> AudioFrame:
        """Wrap a PyAV frame (s16 or flt, packed or planar) without changing its format."""
        name = frame.format.name
        if name not in SAMPLE_FORMATS:
            raise FormatError(
                f"unsupported PyAV sample format {name!r}; supported: {', '.join(SAMPLE_FORMATS)}"
            )
        planar = SAMPLE_FORMATS[name][1]
        data = frame.to_ndarray()
        channels = len(frame.layout.channels)
        samples = data if planar else data.reshape(-1, channels)
        tb = Fraction(frame.time_base) if frame.time_base is not None else None
        return cls(np.ascontiguousarray(samples), int(frame.sample_rate), frame.pts, tb, planar)

    def to_av(self) -> av.AudioFrame:
        """A PyAV frame in this frame's own sample format, with pts and time_base."""
        import av

        layout = {1: "mono", 2: "stereo"}.get(self.channels, f"{self.channels}c")
        data = self.samples if self.planar else self.samples.reshape(1, -1)
        out = av.AudioFrame.from_ndarray(
            np.ascontiguousarray(data), format=self.format, layout=layout
        )
        out.sample_rate = int(self.sample_rate)
        if self.pts is not None:
            out.pts = self.pts
            out.time_base = self.time_base
        return out


def _pixel_shape(fmt: str, height: int, width: int) -> tuple[int, ...]:
    if fmt in ("rgb24", "bgr24"):
        return (height, width, 3)
    if fmt == "gray":
        return (height, width)
    return (height * 3 // 2, width)  # yuv420p / nv12: luma rows then chroma rows, as PyAV lays them


@dataclass(slots=True, eq=False)
class VideoFrame:
    """A video picture: uint8 ``pixels`` in a named ``format``.

    Shapes follow PyAV's ``to_ndarray``: rgb24/bgr24 ``(height, width, 3)``, gray
    ``(height, width)``, yuv420p and nv12 ``(height * 3 // 2, width)``.
    """

    pixels: npt.NDArray[np.uint8]
    format: str = "rgb24"
    pts: int | None = None
    time_base: Fraction | None = None

    def __post_init__(self) -> None:
        if self.format not in PIXEL_FORMATS:
            raise FormatError(
                f"unsupported pixel format {self.format!r}; supported: {PIXEL_FORMATS}"
            )
        if not isinstance(self.pixels, np.ndarray) or self.pixels.dtype != np.uint8:
            raise FormatError("VideoFrame pixels must be a uint8 numpy array")
        expected_ndim = 3 if self.format in ("rgb24", "bgr24") else 2
        if self.pixels.ndim != expected_ndim or (expected_ndim == 3 and self.pixels.shape[2] != 3):
            raise FormatError(f"{self.format} pixels have the wrong shape {self.pixels.shape}")
        if self.format in ("yuv420p", "nv12") and (self.pixels.shape[0] * 2) % 3:
            raise FormatError(
                f"{self.format} pixels need height*3/2 rows, got {self.pixels.shape[0]}"
            )

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])

    @property
    def height(self) -> int:
        rows = int(self.pixels.shape[0])
        return rows * 2 // 3 if self.format in ("yuv420p", "nv12") else rows

    @classmethod
    def blank(cls, width: int, height: int, fmt: str = "rgb24", **timing: Any) -> VideoFrame:
        """A black picture of the given size and format."""
        pixels = np.zeros(_pixel_shape(fmt, height, width), np.uint8)
        if fmt in ("yuv420p", "nv12"):
            pixels[height:] = 128  # neutral chroma
        return cls(pixels, fmt, **timing)

    @classmethod
    def from_av(cls, frame: av.VideoFrame) -> VideoFrame:
        """Wrap a PyAV frame; formats other than the supported ones are converted to rgb24."""
        name = frame.format.name
        fmt = name if name in PIXEL_FORMATS else "rgb24"
        pixels = frame.to_ndarray(format=fmt)
        tb = Fraction(frame.time_base) if frame.time_base is not None else None
        return cls(np.ascontiguousarray(pixels), fmt, frame.pts, tb)

    def to_av(self) -> av.VideoFrame:
        """A PyAV frame in this frame's pixel format, with pts and time_base."""
        import av

        out = av.VideoFrame.from_ndarray(self.pixels, format=self.format)
        if self.pts is not None:
            out.pts = self.pts
            out.time_base = self.time_base
        return out


__all__ = ["PIXEL_FORMATS", "SAMPLE_FORMATS", "AudioFrame", "VideoFrame", "sample_format_of"]


def audio_frame_unchecked(
    samples: npt.NDArray[np.float32], sample_rate: int, pts: int | None, time_base: Fraction | None
) -> AudioFrame:
    """Build a planar AudioFrame without validation: for stages whose kernels already checked it."""
    frame = object.__new__(AudioFrame)
    frame.samples = samples
    frame.sample_rate = sample_rate
    frame.pts = pts
    frame.time_base = time_base
    frame.planar = True
    return frame
