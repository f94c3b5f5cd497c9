"""Mixer: a source that mixes several audio streams into one, aligned by timestamp.

Each input is an async (or plain) iterable of AudioFrames, for example another pipeline's
``process()`` or a source node's ``stream(None)``. A task per input reads it into a small bounded
queue (so a fast input waits for the mix rather than filling memory); the mixer places every frame
on one sample clock at the output rate and emits ``frame_ms`` frames with continuous pts. The sum,
each input times its gain, is ``MixKernel`` (Rust, or the Python twin below).

Alignment rule (docs/stages-audio.md has it in full):

- A timed frame starts at output sample ``round(pts * time_base * sample_rate)``; one that starts
  within one pts tick of where the input's previous frame ended joins it seamlessly. Untimed
  frames follow the input's previous frame, and never start before the mix's current position.
- The output starts at the earliest start among the inputs' first frames, waiting for those at
  most ``stall_ms`` after the first one arrived.
- Audio that arrives for a time the mix already emitted is dropped (it is late); a gap before a
  frame's start is silence; a frame that overlaps its input's earlier audio keeps the earlier.
- An output frame is emitted once every input has audio up to its end or has ended; an input that
  has not, for ``stall_ms`` of wall time since the frame could otherwise go, is stalled: it is
  filled with silence, and not waited for, until audio for the current time arrives from it.
  With nothing to mix (every input stalled or ended with nothing left), the mixer waits.
- An input that ends stops contributing; when all have ended the last frame is cut at the end of
  the latest audio. Events from the inputs are passed on as they arrive; video frames are ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from fractions import Fraction
from typing import Any

import numpy as np

from stream.errors import FormatError, StreamError
from stream.events import Event
from stream.frames import AudioFrame, VideoFrame, as_int, audio_frame_unchecked
from stream.kernel import Block, config_error
from stream.kernel_node import KernelBacked, check_audio
from stream.node import Source
from stream.stage_settings import REQUIRED, Invalid, Setting, Settings, in_range
from stream.stage_settings import as_number as _number

from .level_meter import as_number

MAX_GAIN_DB = 770.0  # as GainKernel: 10 ** (770 / 20) is near float32's largest value
MAX_INPUTS = 256
MAX_CHANNELS = 64
QUEUE_FRAMES = 4  # frames read ahead per input


def _check_gain(stage: str, index: int, gain_db: Any) -> float:
    value = as_number(stage, f"gains_db[{index}]", gain_db)
    if not math.isfinite(value) or value > MAX_GAIN_DB:
        raise config_error(
            stage, f"gains_db[{index}] must be finite and at most {MAX_GAIN_DB}, got {value!r}"
        )
    return value


def _gains(gains_db: Any) -> list[float] | None:
    if gains_db is None:
        return None  # 0 dB for each input
    if isinstance(gains_db, str | bytes) or not isinstance(gains_db, Iterable):
        raise Invalid(f"gains_db must be a sequence of numbers, got {gains_db!r}")
    gains = []
    for i, g in enumerate(gains_db):
        v = _number(f"gains_db[{i}]", g)
        if not math.isfinite(v) or v > MAX_GAIN_DB:
            raise Invalid(f"gains_db[{i}] must be finite and at most {MAX_GAIN_DB}, got {v!r}")
        gains.append(v)
    if not 1 <= len(gains) <= MAX_INPUTS:
        raise Invalid(
            f"gains_db needs one gain per input, 1 to {MAX_INPUTS} of them, got {len(gains)}"
        )
    return gains


def _optional_int(name: str, high: int) -> Any:
    def check(value: Any) -> int | None:
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high
        ):
            raise Invalid(f"{name} must be None or an int in 1..={high}, got {value!r}")
        return value

    return check


SETTINGS = Settings(
    "Mixer",
    Setting(
        "gains_db",
        "list[float] | None",
        None,
        _gains,
        live=True,
        doc="gain of each input, dB (None: 0 dB each); a change applies from the next frame",
        kernel_default=REQUIRED,
    ),
    Setting(
        "sample_rate",
        "int | None",
        None,
        _optional_int("sample_rate", 384000),
        doc="output rate (None: the first input's)",
        kernel=False,
    ),
    Setting(
        "channels",
        "int | None",
        None,
        _optional_int("channels", MAX_CHANNELS),
        doc="output channels (None: the first input's)",
        kernel=False,
    ),
    Setting(
        "frame_ms",
        "float",
        20.0,
        in_range("frame_ms", 0.0, 1000.0, open_low=True),
        doc="output frame length",
        kernel=False,
    ),
    Setting(
        "stall_ms",
        "float",
        100.0,
        in_range("stall_ms", 0.0, 60000.0),
        doc="longest wall-clock wait for a late input",
        kernel=False,
    ),
)


class MixKernel:
    """Python twin of ``stream._engine.MixKernel`` (docs/stages-audio.md).

    ``process(blocks, channels, samples)``: one block per input (a ``(channels_k, samples)``
    float32 array, or None), each times its gain, summed in float32 in input order.
    """

    def __init__(self, gains_db: Sequence[float], *, stage: str = "mixer") -> None:
        self.stage = stage
        gains = SETTINGS.validate(stage, {"gains_db": gains_db}, kernel=True)["gains_db"]
        if gains is None:  # the node resolves None; the kernel needs the gains
            raise config_error(stage, "gains_db must be a sequence of numbers, got None")
        self._gains_db: list[float] = gains
        self._gains = [np.float32(10.0 ** (g / 20.0)) for g in self._gains_db]

    @property
    def gains_db(self) -> list[float]:
        return list(self._gains_db)

    @property
    def inputs(self) -> int:
        return len(self._gains)

    def set_gain_db(self, index: int, gain_db: float) -> None:
        """Sets input ``index``'s gain; it applies from the next call (no ramp)."""
        if not 0 <= index < len(self._gains):
            raise config_error(
                self.stage, f"input index {index} out of range for {len(self._gains)} inputs"
            )
        value = _check_gain(self.stage, index, as_number(self.stage, "gain_db", gain_db))
        self._gains_db[index] = value
        self._gains[index] = np.float32(10.0 ** (value / 20.0))

    def reset(self) -> None:
        return None  # no stream state

    def _check_block(self, k: int, b: Any, channels: int, samples: int) -> None:
        def fail(message: str) -> FormatError:
            return FormatError(f"input {k}: {message}", stage=self.stage)

        if not isinstance(b, np.ndarray) or b.dtype != np.float32 or b.ndim != 2:
            dtype = getattr(b, "dtype", type(b).__name__)
            raise fail(
                "expected a float32 array of shape (channels, samples), "
                f"got {dtype} with {getattr(b, 'ndim', 0)} dimension(s)"
            )
        have, n = b.shape
        if have == 0 or n == 0:
            raise fail(f"empty frame ({have} channels, {n} samples)")
        if n != samples:
            raise fail(f"{n} samples, expected {samples}")
        if not (have == channels or have == 1 or channels == 1):
            raise fail(
                f"cannot mix {have} channels to {channels}; "
                "supported: mono to any, any to mono, or the same count"
            )
        if not math.isfinite(b.sum()):
            bad = np.argwhere(~np.isfinite(b))
            if bad.size:
                c, i = bad[0]
                raise fail(f"non-finite sample at channel {c}, index {i}")

    def process(self, blocks: Sequence[Block | None], channels: int, samples: int) -> Block:
        blocks = list(blocks)
        if len(blocks) != len(self._gains):
            raise FormatError(
                f"expected {len(self._gains)} blocks (one per input), got {len(blocks)}",
                stage=self.stage,
            )
        # A count that is not an int (a float, a bool) is as invalid as one out of range.
        count = as_int(channels)
        if count is None or not 1 <= count <= MAX_CHANNELS:
            shown = channels if count is None else count
            raise FormatError(f"invalid channel count {shown!r}", stage=self.stage)
        length = as_int(samples)
        if length is None or length < 1:
            shown = samples if length is None else length
            raise FormatError(f"invalid sample count {shown!r}", stage=self.stage)
        channels, samples = count, length
        for k, b in enumerate(blocks):
            if b is not None:
                self._check_block(k, b, channels, samples)
        out = np.zeros((channels, samples), np.float32)
        for b, g in zip(blocks, self._gains, strict=True):
            if b is None:
                continue
            have = b.shape[0]
            if have == channels or have == 1:
                out += g * b
            else:  # several channels to mono: their float32 sum times float32(1 / C)
                down = b.sum(axis=0, dtype=np.float32, keepdims=True)
                out += g * (down * np.float32(1.0 / have))
        return out


# --------------------------------------------------------------------------- the node

_END = object()  # an input ended


class _Failed:
    __slots__ = ("exc",)

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


class _Input:
    """One input's reader queue and the audio placed on the output clock, not yet mixed."""

    __slots__ = ("end", "ended", "index", "queue", "segments", "source", "stalled")

    def __init__(self, index: int, source: Any) -> None:
        self.index = index
        self.source = source
        self.queue: asyncio.Queue[Any] = asyncio.Queue(QUEUE_FRAMES)
        self.segments: deque[tuple[int, Block]] = deque()  # (first output sample, samples)
        self.end: int | None = None  # output sample where this input's audio ends so far
        self.ended = False
        self.stalled = False

    def needs(self, until: int) -> bool:
        """Whether the mix must hear from this input before emitting up to ``until``."""
        return not self.ended and (self.stalled or self.end is None or self.end < until)

    def read(self, start: int, n: int) -> Block | None:
        """Its audio for output samples ``start .. start + n`` (None when it has none there)."""
        segments = self.segments
        if not segments or segments[0][0] >= start + n:
            return None
        first, samples = segments[0]
        if first == start and samples.shape[1] == n:
            segments.popleft()
            return samples
        out = np.zeros((samples.shape[0], n), np.float32)
        while segments:
            first, samples = segments[0]
            if first >= start + n:
                break
            last = first + samples.shape[1]
            lo, hi = max(first, start), min(last, start + n)
            out[:, lo - start : hi - start] = samples[:, lo - first : hi - first]
            if last > start + n:
                break
            segments.popleft()
        return out

    def held(self) -> int:
        return sum(s.shape[1] for _, s in self.segments)


async def _read(inp: _Input, wake: asyncio.Event) -> None:
    """Copy one input into its queue; its end (or failure) goes in as a marker."""
    source = inp.source
    it: Any = aiter(source) if isinstance(source, AsyncIterable) else None
    try:
        if it is not None:
            async for item in it:
                await inp.queue.put(item)
                wake.set()
        else:
            for item in source:
                await inp.queue.put(item)
                wake.set()
        await inp.queue.put(_END)
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # handed to the mixer, which raises it
        await inp.queue.put(_Failed(exc))
    finally:
        wake.set()
        aclose = getattr(it, "aclose", None)
        if aclose is not None:
            with contextlib.suppress(Exception):
                await aclose()


async def _wait(wake: asyncio.Event, timeout: float | None) -> None:
    if timeout is None:
        await wake.wait()
        return
    if timeout <= 0:
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await wake.wait()


class Mixer(KernelBacked, Source):
    """Mixes several audio streams into one; a source, so it starts a pipeline.

    ``inputs``: async (or plain) iterables of float32 planar AudioFrames. ``gains_db``: one gain
    per input (default 0 dB each). ``sample_rate``/``channels``: of the output, by default those
    of the first input's first frame; inputs must be at the output rate, and are mixed to its
    channels as ChannelMix would (same count, mono to any, any to mono). Output frames are
    ``frame_ms`` long with continuous pts (time_base ``1/sample_rate``); the mix is not clipped.
    ``stall_ms``: the longest wall-clock wait for a late input before it is filled with silence.
    See the module docstring for the alignment rule. Raises ConfigError for bad settings and,
    mid-stream, FormatError for frames it cannot mix.
    """

    settings = SETTINGS
    native_kernel = "MixKernel"
    python_kernel = MixKernel
    gains_db: list[float]  # live: a change reaches the running kernel from the next frame
    sample_rate: int | None
    channels: int | None
    frame_ms: float
    stall_ms: float

    def __init__(
        self,
        inputs: Iterable[Any],
        gains_db: Sequence[float] | None = None,
        sample_rate: int | None = None,
        channels: int | None = None,
        frame_ms: float = 20.0,
        stall_ms: float = 100.0,
        *,
        name: str | None = None,
        backend: str | None = None,
    ) -> None:
        super().__init__(name)
        stage = self.name
        self._backend_init(backend)  # a bad backend fails first, before the inputs are looked at
        if isinstance(inputs, str | bytes) or not isinstance(inputs, Iterable):
            raise config_error(stage, f"inputs must be a list of streams, got {inputs!r}")
        self.inputs = list(inputs)
        for i, source in enumerate(self.inputs):
            if isinstance(source, str | bytes | AudioFrame) or not isinstance(
                source, AsyncIterable | Iterable
            ):
                raise config_error(
                    stage, f"input {i} must be an iterable of AudioFrames, got {source!r}"
                )
        if not 1 <= len(self.inputs) <= MAX_INPUTS:
            raise config_error(
                stage, f"inputs needs 1 to {MAX_INPUTS} streams, got {len(self.inputs)}"
            )
        self.configure(
            gains_db=gains_db,
            sample_rate=sample_rate,
            channels=channels,
            frame_ms=frame_ms,
            stall_ms=stall_ms,
        )
        if self._settings["gains_db"] is None:
            self._settings["gains_db"] = [0.0] * len(self.inputs)
        self._check_count(self._settings["gains_db"])
        self._live: list[_Input] = []

    def _check_count(self, gains: list[float]) -> None:
        if len(gains) != len(self.inputs):
            raise config_error(
                self.name, f"gains_db has {len(gains)} gains for {len(self.inputs)} inputs"
            )

    def apply_live(self, name: str, value: Any) -> None:
        """``gains_db`` changed: each input's gain applies from the next output frame."""
        self._check_count(value)
        if self._kernel is not None:
            for index, gain in enumerate(value):
                self._kernel.set_gain_db(index, gain)

    def set_gain_db(self, index: int, gain_db: float) -> None:
        """Sets input ``index``'s gain; it applies from the next output frame (no ramp).
        The same as assigning ``gains_db`` with that one gain changed."""
        gains = self.gains_db
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(gains):
            raise config_error(
                self.name, f"input index {index} out of range for {len(gains)} inputs"
            )
        gains[index] = gain_db
        self.gains_db = gains

    def backlog(self) -> list[tuple[int, int]]:
        """Per input: frames waiting in its queue and samples placed but not yet mixed."""
        return [(inp.queue.qsize(), inp.held()) for inp in self._live]

    def initialize(self) -> None:
        self.build_kernel()

    def _audio(self, inp: _Input, item: Any, rate: int, channels: int) -> AudioFrame:
        frame = check_audio(self.name, item, f"input {inp.index}: ")
        assert frame is not None  # _take skipped video, so the check returns the frame or raises
        if rate and frame.sample_rate != rate:
            raise FormatError(
                f"input {inp.index} is at {frame.sample_rate} Hz but the mix at {rate} Hz; "
                f"resample it first (Resample(sample_rate={rate}))",
                stage=self.name,
            )
        have = frame.channels
        if channels and not (have == channels or have == 1 or channels == 1):
            raise FormatError(
                f"input {inp.index}: cannot mix {have} channels to {channels}; "
                "supported: mono to any, any to mono, or the same count",
                stage=self.name,
            )
        return frame

    def _take(self, inp: _Input, events: list[Event]) -> AudioFrame | None:
        """The next audio frame in ``inp``'s queue, if any; passes events, skips video."""
        while not inp.queue.empty():
            item = inp.queue.get_nowait()
            if item is _END:
                inp.ended = True
                return None
            if isinstance(item, _Failed):
                raise StreamError(
                    f"input {inp.index} failed: {type(item.exc).__name__}: {item.exc}",
                    stage=self.name,
                ) from item.exc
            if type(item) is Event:
                events.append(item)
            elif not isinstance(item, VideoFrame):
                return item  # type: ignore[no-any-return]
        return None

    @staticmethod
    def _place(inp: _Input, frame: AudioFrame, position: int, rate: int) -> bool:
        """Put ``frame`` on the output clock; True when it brought audio at or after
        ``position`` (the next sample to emit)."""
        pts, tb = frame.pts, frame.time_base
        if pts is None or tb is None:
            start = position if inp.end is None else max(inp.end, position)
        elif tb.numerator * rate == tb.denominator:  # time_base 1/rate: pts count samples
            start = pts
        else:  # start = pts * tb * rate = exact / den, in integers (Fraction is slow here)
            tick, den = tb.numerator * rate, tb.denominator
            exact = pts * tick
            start, rest = divmod(exact, den)
            if 2 * rest > den or (2 * rest == den and start % 2):  # round half to even
                start += 1
            if inp.end is not None and abs(exact - inp.end * den) < tick:
                start = inp.end  # within a pts tick of running on: rounding, not a gap
        end = start + frame.samples.shape[1]
        keep_from = max(start, position, inp.end if inp.end is not None else start)
        if inp.end is None or end > inp.end:
            inp.end = end
        if end <= keep_from:
            return False
        inp.segments.append((keep_from, frame.samples[:, keep_from - start :]))
        return True

    async def stream(self, items: AsyncIterator[Any] | None) -> AsyncIterator[Any]:
        loop = asyncio.get_running_loop()
        stall = self.stall_ms / 1000.0
        wake = asyncio.Event()
        inputs = [_Input(i, source) for i, source in enumerate(self.inputs)]
        self._live = inputs
        tasks = [
            asyncio.create_task(_read(inp, wake), name=f"{self.name}:input{inp.index}")
            for inp in inputs
        ]
        events: list[Event] = []
        try:
            # Startup: every input's first frame, waiting at most stall_ms after the first one.
            firsts: dict[int, AudioFrame] = {}
            deadline: float | None = None
            while True:
                wake.clear()
                for inp in inputs:
                    if inp.index not in firsts and not inp.ended:
                        item = self._take(inp, events)
                        if item is not None:
                            firsts[inp.index] = self._audio(
                                inp, item, self.sample_rate or 0, self.channels or 0
                            )
                for event in events:
                    yield event
                events.clear()
                missing = [i for i in inputs if i.index not in firsts and not i.ended]
                if not missing:
                    break
                if firsts and deadline is None:
                    deadline = loop.time() + stall
                if deadline is not None and loop.time() >= deadline:
                    for inp in missing:
                        inp.stalled = True
                    break
                await _wait(wake, None if deadline is None else deadline - loop.time())
            if not firsts:
                return
            head = firsts[min(firsts)]
            rate = self.sample_rate or head.sample_rate
            channels = self.channels or head.channels
            tb = Fraction(1, rate)
            size = max(1, round(self.frame_ms * rate / 1000.0))
            starts = [
                round(f.pts * f.time_base * rate)
                for f in firsts.values()
                if f.pts is not None and f.time_base is not None
            ]
            position = min(starts) if starts else 0
            for index, frame in sorted(firsts.items()):
                self._audio(inputs[index], frame, rate, channels)
                self._place(inputs[index], frame, position, rate)

            mix = self._kernel.process
            deadline = None
            while True:
                wake.clear()
                until = position + size
                for inp in inputs:
                    while inp.needs(until):
                        item = self._take(inp, events)
                        if item is None:
                            break
                        frame = self._audio(inp, item, rate, channels)
                        if self._place(inp, frame, position, rate) and inp.stalled:
                            inp.stalled = False
                for event in events:
                    yield event
                events.clear()
                has_audio = any(inp.segments for inp in inputs)
                done = all(inp.ended for inp in inputs)
                if done and not has_audio:
                    return
                waiting = [inp for inp in inputs if inp.needs(until) and not inp.stalled]
                if has_audio and not waiting:
                    n = size
                    if done:
                        n = min(size, max(inp.end or 0 for inp in inputs) - position)
                    blocks = [inp.read(position, n) for inp in inputs]
                    samples = mix(blocks, channels, n)
                    yield audio_frame_unchecked(samples, rate, position, tb)
                    position += n
                    deadline = None
                    continue
                timeout: float | None = None
                if has_audio:
                    now = loop.time()
                    if deadline is None:
                        deadline = now + stall
                    if now >= deadline:
                        for inp in waiting:
                            inp.stalled = True
                        continue
                    timeout = deadline - now
                await _wait(wake, timeout)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._live = []

    def cleanup(self) -> None:
        self._live = []


__all__ = ["MixKernel", "Mixer"]
