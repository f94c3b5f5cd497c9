"""FrameRate: a constant output frame rate, by dropping or repeating frames by timestamp.

Output frame ``k`` has pts ``k`` in time base ``1 / fps`` and shows the latest input frame (in
arrival order) whose time ``t`` rounds to an output slot at most ``k``: slot(t) =
``floor(t * fps + 1/2)``, exact rational arithmetic. So 30 -> 15 keeps every other frame,
24 -> 30 repeats every fourth, and input jitter under half an output period changes nothing. The
output starts at the first frame's slot and has no gaps. A frame comes out when the next input
frame (or the end of the stream) says how many slots it fills: one input frame of delay. At the
end the last frame fills the slots up to its time plus the stream's mean frame interval.

The kernel only does the timing (``FrameRateKernel``: timestamps in, slot counts out); the node
holds the frame. Repeated frames share the held frame's pixel array. See docs/stages-video.md.
"""

from __future__ import annotations

import math
import operator
from fractions import Fraction
from typing import Any

from stream.errors import FormatError
from stream.frames import VideoFrame
from stream.stage_settings import Invalid, Setting, Settings

from .base import PyVideoKernel, VideoNode, stage_error

MAX_FPS = 1000
MAX_FPS_TERM = 1 << 20
MAX_TIME_BASE_TERM = 2**31 - 1
MAX_SLOT = 1 << 62
_INT64 = range(-(2**63), 2**63)


def _fps(fps: Any) -> Fraction:
    try:
        value = Fraction(fps)
        if isinstance(fps, float):
            value = value.limit_denominator(1001)
    except Exception:  # whatever Fraction() refuses (TypeError, ValueError, OverflowError...)
        raise Invalid(
            f"fps must be a number (an int, float, Fraction or 'num/den' string), got {fps!r}"
        ) from None
    num, den = value.numerator, value.denominator
    if not (1 <= num <= MAX_FPS_TERM and 1 <= den <= MAX_FPS_TERM and num <= MAX_FPS * den):
        raise Invalid(
            f"fps must be above 0 and at most {MAX_FPS}, with numerator and denominator at most "
            f"{MAX_FPS_TERM}, got {value}"
        )
    return value


SETTINGS = Settings(
    "FrameRate",
    Setting(
        "fps",
        "int | float | Fraction | str",
        check=_fps,
        doc="output frame rate (frames per second), above 0 and at most 1000",
    ),
)


def parse_fps(stage: str, fps: Any) -> Fraction:
    """``fps`` as a Fraction: an int, Fraction, ``'num/den'`` string, or a float (the nearest
    fraction with a denominator up to 1001, so 29.97 is 2997/100). ConfigError otherwise."""
    value: Fraction = SETTINGS["fps"].validate(stage, fps)
    return value


def _fraction(num: int, den: int) -> str:
    return str(num) if den == 1 else f"{num}/{den}"


class FrameRateKernel(PyVideoKernel):
    """Python twin of ``stream._engine.FrameRateKernel`` (docs/stages-video.md).

    ``process(pts, time_base) -> (start, count)``: registers an input frame at
    ``pts * time_base`` seconds; the frame registered before it fills output pts
    ``start .. start + count``. ``flush()`` gives the last frame's share, then resets.
    """

    def __init__(self, fps: Any, *, stage: str = "frame_rate") -> None:
        super().__init__(stage=stage)
        self._fps: Fraction = SETTINGS.validate(stage, {"fps": fps}, kernel=True)["fps"]
        self._stream: dict[str, Any] | None = None

    @property
    def fps(self) -> Fraction:
        return self._fps

    @property
    def time_base(self) -> Fraction:
        return 1 / self._fps

    def _int64(self, name: str, value: Any, what: str) -> int:
        try:
            n = operator.index(value)
        except TypeError:
            n = None
        if n is None or n not in _INT64:
            raise self.error(FormatError, f"{name} must be {what}, got {value!r}")
        return n

    def process(self, pts: Any, time_base: Any) -> tuple[int, int]:
        p = self._int64("pts", pts, "an int in the int64 range")
        try:
            tb_num = operator.index(time_base.numerator)
            tb_den = operator.index(time_base.denominator)
            if tb_num not in _INT64 or tb_den not in _INT64:
                raise TypeError
        except (AttributeError, TypeError):
            raise self.error(
                FormatError, f"time_base must be a Fraction with int64 terms, got {time_base!r}"
            ) from None
        if not (1 <= tb_num <= MAX_TIME_BASE_TERM and 1 <= tb_den <= MAX_TIME_BASE_TERM):
            raise self.error(
                FormatError,
                f"invalid time base {_fraction(tb_num, tb_den)}: numerator and denominator "
                f"must be in 1..={MAX_TIME_BASE_TERM}",
            )
        denom = tb_den * self._fps.denominator
        pos = p * tb_num * self._fps.numerator
        slot = (2 * pos + denom) // (2 * denom)
        if abs(slot) >= MAX_SLOT:
            raise self.error(
                FormatError, f"pts {p} is out of range: its output pts is beyond +-2**62"
            )
        s = self._stream
        if s is None:
            self._stream = {
                "tb": (tb_num, tb_den),
                "denom": denom,
                "first": pos,
                "last": pos,
                "frames": 1,
                "next": slot,
            }
            return slot, 0
        if s["tb"] != (tb_num, tb_den):
            raise self.error(
                FormatError,
                f"time base changed mid-stream from {_fraction(*s['tb'])} to "
                f"{_fraction(tb_num, tb_den)}",
            )
        start = s["next"]
        count = max(slot - start, 0)
        s["next"] += count
        s["frames"] += 1
        s["last"] = pos
        return start, count

    def flush(self) -> tuple[int, int]:
        s, self._stream = self._stream, None
        if s is None:
            return 0, 0
        denom, first, last, frames = s["denom"], s["first"], s["last"], s["frames"]
        end = Fraction(last, denom)
        if frames >= 2 and last > first:
            end += Fraction(last - first, denom * (frames - 1))
        else:
            end += 1
        end_slot = min(math.floor(end + Fraction(1, 2)), MAX_SLOT - 1)
        return s["next"], max(end_slot - s["next"], 0)

    def reset(self) -> None:
        self._stream = None


class FrameRate(VideoNode):
    """Constant frame rate ``fps`` (an int, float, Fraction or ``'num/den'`` string, up to 1000):
    drops or repeats frames by timestamp. Output pts count frames in time base ``1 / fps``.

    Needs timed frames (FormatError otherwise); raises ConfigError for a bad ``fps``.
    """

    native_kernel = "FrameRateKernel"
    python_kernel = FrameRateKernel
    settings = SETTINGS
    fps: Fraction

    def __init__(self, fps: Any, *, name: str | None = None, backend: str | None = None) -> None:
        super().__init__(name=name, backend=backend)
        self.configure(fps=fps)
        self.time_base = 1 / self.fps
        self._held: VideoFrame | None = None

    def kernel_args(self) -> dict[str, Any]:
        fps = self.fps  # as the engine takes it: an int, or a "num/den" string
        return {"fps": fps.numerator if fps.denominator == 1 else str(fps)}

    def initialize(self) -> None:
        super().initialize()
        self._held = None

    def _repeat(self, start: int, count: int) -> list[Any]:
        held = self._held
        if held is None or count <= 0:
            return []
        tb = self.time_base
        out: list[Any] = []
        for k in range(start, start + count):
            frame = object.__new__(VideoFrame)
            frame.pixels, frame.format, frame.pts, frame.time_base = held.pixels, held.format, k, tb
            out.append(frame)
        return out

    def process_video(self, frame: VideoFrame) -> list[Any]:
        if frame.pts is None or frame.time_base is None:
            raise stage_error(
                FormatError,
                self.name,
                f"FrameRate needs timed video frames (pts and time_base), got pts={frame.pts}",
            )
        start, count = self._kernel.process(frame.pts, frame.time_base)
        out = self._repeat(start, count)
        self._held = frame
        return out

    def flush(self) -> list[Any]:
        start, count = self._kernel.flush()
        out = self._repeat(start, count)
        self._held = None
        return out

    def cleanup(self) -> None:
        self._held = None
        if self._kernel is not None:
            self._kernel.reset()


__all__ = ["FrameRate", "FrameRateKernel", "parse_fps"]
