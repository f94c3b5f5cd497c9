"""Media frames: a numpy payload plus timing (``pts`` in units of ``time_base`` seconds).

Audio stages work on float32 planar blocks of shape ``(channels, samples)``; ``AudioFrame`` can
also hold int16 and interleaved ``(samples, channels)`` data, named as PyAV names sample formats
(``fltp``, ``flt``, ``s16p``, ``s16``), so edges (devices, files, sockets) can use theirs and
``FormatConvert`` moves between them. Each type converts to and from PyAV with one function.

What a frame may hold (the constructors check it once, raising FormatError; README "Frames"):

- ``AudioFrame.samples``: a 2-D float32 or int16 numpy array, ``(channels, samples)`` when planar,
  ``(samples, channels)`` when not; 1 to ``MAX_CHANNELS`` (64) channels and at least one sample
  (a stage with nothing to say emits no frame rather than an empty one). Sample values are not
  scanned here: stages refuse NaN and infinity (docs/kernels.md, check 4).
- ``AudioFrame.sample_rate``: an int (or numpy integer; a bool is not a rate) in
  1..=``MAX_SAMPLE_RATE`` (768000) Hz.
- ``VideoFrame.pixels``: a uint8 array in its format's layout with a width and height of at least
  one; 4:2:0 formats need both even.
- ``pts``: an int or None; ``time_base``: a Fraction above 0 or None.

Frames are mutable, so what is assigned later is not checked here: stages check what they take
(``stream.kernel_node.check_audio``, ``media_nodes.video.base.check_video`` and the kernels, with
the functions below) and raise FormatError naming the stage.
"""

from __future__ import annotations

import operator
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
#: Most channels a frame holds: what a channel-layout mask can name (and ChannelMix's limit).
MAX_CHANNELS = 64
#: Highest sample rate, Hz: 16 x 48 kHz, the fastest audio interfaces run.
MAX_SAMPLE_RATE = 768_000
_SAMPLE_DTYPES = (np.dtype(np.float32), np.dtype(np.int16))


def as_int(value: Any) -> int | None:
    """``value`` as an int if it is one (anything with ``__index__``, as numpy integers); None
    for a bool, a float or anything else. The engine reads ints the same way."""
    if isinstance(value, bool | np.bool_):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


def rate_problem(sample_rate: Any) -> str | None:
    """``"invalid sample rate {rate}"`` unless ``sample_rate`` is an int in 1..=MAX_SAMPLE_RATE."""
    rate = as_int(sample_rate)
    if rate is None:
        return f"invalid sample rate {sample_rate!r}"
    if not 1 <= rate <= MAX_SAMPLE_RATE:
        return f"invalid sample rate {rate}"
    return None


def samples_problem(samples: Any, planar: bool = True, float_only: bool = False) -> str | None:
    """What makes ``samples`` unfit for an AudioFrame, or None. With ``float_only`` (what audio
    stages take) the order and words are the kernels' checks 1 and 2 (docs/kernels.md)."""
    layout = "(channels, samples)" if planar else "(samples, channels)"
    if (
        not isinstance(samples, np.ndarray)
        or samples.ndim != 2
        or samples.dtype not in _SAMPLE_DTYPES
        or (float_only and samples.dtype != _SAMPLE_DTYPES[0])
    ):
        dtype = getattr(samples, "dtype", type(samples).__name__)
        ndim = getattr(samples, "ndim", 0)
        expected = "a float32 array" if float_only else "a 2-D float32 or int16 numpy array"
        return f"expected {expected} of shape {layout}, got {dtype} with {ndim} dimension(s)"
    channels, n = samples.shape if planar else samples.shape[::-1]
    if channels == 0 or n == 0:
        return f"empty frame ({channels} channels, {n} samples)"
    if channels > MAX_CHANNELS:
        return f"too many channels ({channels}; at most {MAX_CHANNELS})"
    return None


#: Each pixel format's array layout, as PyAV's ``to_ndarray`` gives it.
PIXEL_LAYOUTS = {
    "rgb24": "(height, width, 3)",
    "bgr24": "(height, width, 3)",
    "gray": "(height, width)",
    "yuv420p": "(height * 3 // 2, width)",
    "nv12": "(height * 3 // 2, width)",
}


def picture_problem(pixels: Any, fmt: Any) -> str | None:
    """What makes ``pixels`` unfit for a VideoFrame in ``fmt``, or None: the video kernels'
    checks 1 to 5, in their order and words (docs/stages-video.md)."""
    if not isinstance(fmt, str) or fmt not in PIXEL_LAYOUTS:
        return f"unsupported pixel format {fmt!r}; supported: {list(PIXEL_FORMATS)}"
    expected = f"expected a uint8 array of shape {PIXEL_LAYOUTS[fmt]} for {fmt}"
    if not isinstance(pixels, np.ndarray):
        return f"{expected}, got {type(pixels).__name__} with 0 dimension(s)"
    ndim = 3 if fmt in ("rgb24", "bgr24") else 2
    if pixels.dtype != np.uint8 or pixels.ndim != ndim:
        return f"{expected}, got {pixels.dtype} with {pixels.ndim} dimension(s)"
    shape = pixels.shape
    yuv = fmt in ("yuv420p", "nv12")
    if (ndim == 3 and shape[2] != 3) or (yuv and shape[0] % 3):
        return f"{expected}, got shape {shape}"
    width, height = shape[1], shape[0] // 3 * 2 if yuv else shape[0]
    if width == 0 or height == 0:
        return f"empty picture ({width}x{height})"
    if yuv and (width % 2 or height % 2):
        return f"{fmt} needs an even width and height, got {width}x{height}"
    return None


def timing_problem(pts: Any, time_base: Any) -> str | None:
    """What is wrong with a frame's ``pts``/``time_base``, or None."""
    if pts is not None and as_int(pts) is None:
        return f"pts must be an int or None, got {pts!r}"
    # A Fraction keeps its sign in the numerator; comparing it with 0 costs ten times more.
    if time_base is not None and not (isinstance(time_base, Fraction) and time_base.numerator > 0):
        return f"time_base must be a Fraction above 0 or None, got {time_base!r}"
    return None


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
    what stages take), ``(samples, channels)`` when not; 1 to 64 channels, at least one sample.
    ``sample_rate``: an int in 1..=768000 Hz. ``pts`` counts ``time_base`` seconds; both are None
    for untimed audio. Raises FormatError for anything else (the module docstring has the rules).
    """

    samples: npt.NDArray[Any]
    sample_rate: int
    pts: int | None = None
    time_base: Fraction | None = None
    planar: bool = True

    def __post_init__(self) -> None:
        problem = samples_problem(self.samples, self.planar)
        if problem is None and (problem := rate_problem(self.sample_rate)) is not None:
            problem += f"; sample_rate must be an int in 1..={MAX_SAMPLE_RATE} Hz"
        if problem is None:
            problem = timing_problem(self.pts, self.time_base)
        if problem is not None:
            raise FormatError(f"AudioFrame: {problem}")
        self.sample_rate = operator.index(self.sample_rate)  # a numpy integer: a plain int
        if self.pts is not None:
            self.pts = operator.index(self.pts)
            if self.time_base is None:
                self.time_base = Fraction(1, self.sample_rate)

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
        channels = len(frame.layout.channels)
        if planar and channels >= 8:
            # PyAV 18 counts a frame's planes up to a NULL pointer FFmpeg does not put after
            # 8 or more planes: to_ndarray() reads past them (IndexError, or a crash). Packed
            # data is one plane; the same format packed is the same samples.
            import av

            packed = av.AudioResampler(name.rstrip("p"), frame.layout, frame.sample_rate)
            parts = [*packed.resample(frame), *packed.resample(None)]
            data = np.concatenate([p.to_ndarray() for p in parts], axis=1)
            samples = data.reshape(-1, channels).T
        else:
            data = frame.to_ndarray()
            samples = data if planar else data.reshape(-1, channels)
        tb = Fraction(frame.time_base) if frame.time_base is not None else None
        return cls(np.ascontiguousarray(samples), int(frame.sample_rate), frame.pts, tb, planar)

    def to_av(self) -> av.AudioFrame:
        """A PyAV frame in this frame's own sample format (packed from 8 channels up), with pts
        and time_base."""
        import av

        # FFmpeg's default layouts (mono ... 7.1) up to 8 channels; beyond, unordered: its
        # defaults there (9.1.6, 22.2) would give plain channels a meaning, and "Nc" for other
        # counts is no layout at all (av.AudioLayout("64c") is a ValueError)
        n = self.channels
        layout = f"{n}c" if n <= 8 else f"{n} channels"
        fmt = self.format
        if not self.planar:
            data = self.samples.reshape(1, -1)
        elif n >= 8:  # packed: PyAV 18 cannot fill 8 or more planes (see from_av)
            data, fmt = self.samples.T.reshape(1, -1), fmt.rstrip("p")
        else:
            data = self.samples
        out = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=fmt, layout=layout)
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
    ``(height, width)``, yuv420p and nv12 ``(height * 3 // 2, width)``; at least 1x1, and 4:2:0
    sizes even. Raises FormatError for anything else (the module docstring has the rules).
    """

    pixels: npt.NDArray[np.uint8]
    format: str = "rgb24"
    pts: int | None = None
    time_base: Fraction | None = None

    def __post_init__(self) -> None:
        problem = picture_problem(self.pixels, self.format) or timing_problem(
            self.pts, self.time_base
        )
        if problem is not None:
            raise FormatError(f"VideoFrame: {problem}")
        if self.pts is not None:
            self.pts = operator.index(self.pts)

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


__all__ = [
    "MAX_CHANNELS",
    "MAX_SAMPLE_RATE",
    "PIXEL_FORMATS",
    "PIXEL_LAYOUTS",
    "SAMPLE_FORMATS",
    "AudioFrame",
    "VideoFrame",
    "as_int",
    "picture_problem",
    "rate_problem",
    "sample_format_of",
    "samples_problem",
    "timing_problem",
]


def audio_frame_unchecked(
    samples: npt.NDArray[Any],
    sample_rate: int,
    pts: int | None,
    time_base: Fraction | None,
    planar: bool = True,
) -> AudioFrame:
    """Build an AudioFrame without validation: for stages whose kernels already checked it."""
    frame = object.__new__(AudioFrame)
    frame.samples = samples
    frame.sample_rate = sample_rate
    frame.pts = pts
    frame.time_base = time_base
    frame.planar = planar
    return frame
