"""EchoCancel: remove the echo of what the loudspeaker plays from the microphone signal.

The kernel is Speex's MDF canceller (a multidelay block frequency-domain adaptive filter with an
adaptive step size that keeps it stable through double talk), from libspeexdsp (Debian's
``libspeexdsp1``). The Rust kernel loads that library at run time; the Python twin below calls the
same library through ctypes, so the two backends compute the same samples (the parity test asserts
equality). No PyPI package was used for the twin: the Speex bindings there are unmaintained
(``speexdsp``, 2018, needs swig) or wrap a differently configured build (``pyaec`` bundles its own
library with the preprocessor on), and a ctypes call to the library the Rust kernel uses is the one
way to make the twins agree exactly.

The node, ``EchoCancel(reference)``, reads the far-end stream (what the speaker played, e.g.
``SpeakerSink.reference()``) in a task, places it on the near-end's sample clock by timestamps and
feeds both to the kernel; near-end audio with no reference audio for its time is processed against
silence (it passes through, minus the tail of the echo of earlier far-end audio) and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import math
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any

import numpy as np

from stream.engine import select_kernel
from stream.errors import BackendUnavailable, FormatError
from stream.frames import AudioFrame
from stream.kernel import Block, PyKernel, config_error
from stream.node import Node

from .level_meter import as_number

LIBRARY = "libspeexdsp.so.1"
MIN_RATE, MAX_RATE = 8000, 96000
FILTER_MS = (10.0, 2000.0)
FRAME_MS = (2.0, 100.0)
_SET_SAMPLING_RATE = 24  # speex_echo.h
_I16P = ctypes.POINTER(ctypes.c_int16)
_LIB: ctypes.CDLL | None = None


def _library(stage: str) -> ctypes.CDLL:
    """libspeexdsp, loaded once; BackendUnavailable (naming ``stage``) when it is missing."""
    global _LIB
    if _LIB is not None:
        return _LIB
    try:
        lib = ctypes.CDLL(LIBRARY)
    except OSError as exc:
        err = BackendUnavailable(
            f"{stage}: echo cancellation needs libspeexdsp ({LIBRARY}: {exc}); install libspeexdsp1"
        )
        err.stage = stage
        raise err from exc
    lib.speex_echo_state_init.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.speex_echo_state_init.restype = ctypes.c_void_p
    lib.speex_echo_state_destroy.argtypes = [ctypes.c_void_p]
    lib.speex_echo_state_destroy.restype = None
    lib.speex_echo_cancellation.argtypes = [ctypes.c_void_p, _I16P, _I16P, _I16P]
    lib.speex_echo_cancellation.restype = None
    lib.speex_echo_ctl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p]
    lib.speex_echo_ctl.restype = ctypes.c_int
    _LIB = lib
    return lib


def _check_range(stage: str, name: str, value: Any, bounds: tuple[float, float]) -> float:
    v = as_number(stage, name, value)
    if not (math.isfinite(v) and bounds[0] <= v <= bounds[1]):
        raise config_error(
            stage, f"{name} must be a number in [{bounds[0]}, {bounds[1]}], got {v!r}"
        )
    return v


def _samples(ms: float, rate: int) -> int:
    return max(1, round(ms * rate / 1000))


def _to_i16(x: Block) -> np.ndarray[Any, np.dtype[np.int16]]:
    q: np.ndarray[Any, np.dtype[np.int16]] = np.clip(
        np.rint(x * np.float32(32768.0)), -32768, 32767
    ).astype(np.int16)
    return q


class _Speex:
    """One Speex echo canceller state and the partial frame being filled."""

    def __init__(self, lib: ctypes.CDLL, rate: int, far_channels: int, frame: int, taps: int):
        self.lib, self.rate, self.far_channels, self.frame = lib, rate, far_channels, frame
        self.ptr = lib.speex_echo_state_init(frame, taps)
        if not self.ptr:
            raise RuntimeError("speex_echo_state_init failed")
        r = ctypes.c_int(rate)
        lib.speex_echo_ctl(self.ptr, _SET_SAMPLING_RATE, ctypes.byref(r))
        self.near = np.zeros(frame, np.int16)
        self.far = np.zeros(frame, np.int16)
        self.out = np.zeros(frame, np.int16)
        self.fill = 0

    def run(self) -> Block:
        self.lib.speex_echo_cancellation(
            self.ptr,
            self.near.ctypes.data_as(_I16P),
            self.far.ctypes.data_as(_I16P),
            self.out.ctypes.data_as(_I16P),
        )
        return self.out.astype(np.float32) / np.float32(32768.0)

    def __del__(self) -> None:
        if getattr(self, "ptr", None):
            self.lib.speex_echo_state_destroy(self.ptr)
            self.ptr = None


class EchoCancelKernel(PyKernel):
    """Python twin of ``stream._engine.EchoCancelKernel`` (docs/stages-audio.md).

    ``process(near, far, sample_rate)``: ``near`` a ``(1, n)`` float32 block, ``far`` ``(C, n)``
    (averaged to mono); returns zero or one ``(1, k * frame)`` block of echo-cancelled near-end.
    """

    def __init__(
        self, filter_ms: float = 200.0, frame_ms: float = 20.0, *, stage: str = "echo_cancel"
    ) -> None:
        super().__init__(stage=stage)
        self.filter_ms = _check_range(stage, "filter_ms", filter_ms, FILTER_MS)
        self.frame_ms = _check_range(stage, "frame_ms", frame_ms, FRAME_MS)
        self._lib = _library(stage)
        self._st: _Speex | None = None

    latency_samples = 0

    @property
    def frame_samples(self) -> int | None:
        return None if self._st is None else self._st.frame

    @property
    def filter_samples(self) -> int | None:
        return None if self._st is None else _samples(self.filter_ms, self._st.rate)

    @property
    def pending_samples(self) -> int:
        return 0 if self._st is None else self._st.fill

    def _side(self, side: str, exc: FormatError) -> FormatError:
        msg = str(exc).removeprefix(f"{self.stage}: ")
        return self.error(FormatError, f"{side}: {msg}")  # type: ignore[return-value]

    def _check1(self, side: str, x: Any) -> None:
        if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 2:
            raise self.error(
                FormatError,
                f"{side}: expected a float32 array of shape (channels, samples), got "
                f"{getattr(x, 'dtype', type(x).__name__)} with {getattr(x, 'ndim', 0)} "
                "dimension(s)",
            )

    def process(self, near: Any, far: Any, sample_rate: int) -> list[Block]:  # type: ignore[override]
        self._check1("near", near)
        self._check1("far", far)
        blocks = []
        for side, x in (("near", near), ("far", far)):
            try:
                blocks.append(self.check(x, sample_rate))
            except FormatError as exc:
                raise self._side(side, exc) from None
        x, f = blocks
        rate = int(sample_rate)
        if x.shape[0] != 1:
            raise self.error(
                FormatError,
                f"near: echo cancellation takes mono near-end audio, got {x.shape[0]} channels; "
                "put ChannelMix(1) before it",
            )
        n = x.shape[1]
        if f.shape[1] != n:
            raise self.error(
                FormatError,
                f"far: {f.shape[1]} samples, expected {n} (one far-end block per near-end block)",
            )
        if not MIN_RATE <= rate <= MAX_RATE:
            raise self.error(
                FormatError,
                f"echo cancellation runs at {MIN_RATE} to {MAX_RATE} Hz, got {rate} Hz; "
                "put Resample before it",
            )
        st = self._st
        if st is not None:
            if rate != st.rate:
                raise self.error(
                    FormatError, f"sample rate changed mid-stream from {st.rate} to {rate} Hz"
                )
            if f.shape[0] != st.far_channels:
                raise self.error(
                    FormatError,
                    f"far: channel count changed mid-stream from {st.far_channels} to {f.shape[0]}",
                )
        else:
            st = self._st = _Speex(
                self._lib,
                rate,
                f.shape[0],
                _samples(self.frame_ms, rate),
                _samples(self.filter_ms, rate),
            )
        mono = f[0].copy()
        if f.shape[0] > 1:  # the channels' float32 sum in channel order, times float32(1 / C)
            for c in range(1, f.shape[0]):
                mono += f[c]
            mono *= np.float32(1.0 / f.shape[0])
        xi, fi = _to_i16(x[0]), _to_i16(mono)
        out: list[Block] = []
        pos = 0
        while pos < n:
            take = min(st.frame - st.fill, n - pos)
            st.near[st.fill : st.fill + take] = xi[pos : pos + take]
            st.far[st.fill : st.fill + take] = fi[pos : pos + take]
            st.fill += take
            pos += take
            if st.fill == st.frame:
                out.append(st.run())
                st.fill = 0
        return [np.concatenate(out)[None, :]] if out else []

    def flush(self) -> list[Block]:
        st, out = self._st, []
        if st is not None and st.fill:
            st.near[st.fill :] = 0
            st.far[st.fill :] = 0
            out = [st.run()[: st.fill][None, :].copy()]
        self.reset()
        return out

    def reset(self) -> None:
        self._st = None


class EchoCancel(Node):
    """Cancel the echo of ``reference`` (the far-end audio the speaker plays) in the near-end.

    ``reference``: an async (or plain) iterable of float32 planar AudioFrames at the near-end's
    rate, such as ``SpeakerSink.reference()``; read once, by a task started at ``initialize()``.
    Near-end frames must be mono float32 planar. ``filter_ms`` is the longest echo path modelled
    (default 200 ms), ``frame_ms`` the kernel's frame (20 ms), ``stall_ms`` how long a near-end
    frame waits for reference audio covering it before it is processed against silence.
    Output frames are whole kernel frames, timed on the near-end's sample clock.
    """

    accepts_any = True

    def __init__(
        self,
        reference: AsyncIterable[Any] | Iterable[Any],
        filter_ms: float = 200.0,
        frame_ms: float = 20.0,
        stall_ms: float = 50.0,
        *,
        name: str | None = None,
        backend: str | None = None,
    ) -> None:
        super().__init__(name=name)
        stage = self.name
        self.reference = reference
        self.filter_ms = _check_range(stage, "filter_ms", filter_ms, FILTER_MS)
        self.frame_ms = _check_range(stage, "frame_ms", frame_ms, FRAME_MS)
        self.stall_ms = _check_range(stage, "stall_ms", stall_ms, (0.0, 60000.0))
        self.requested_backend = backend
        self.backend = "unset"
        self.backend_reason = "not initialized"
        #: near-end frames processed with no reference audio for (part of) their time
        self.unreferenced_frames = 0
        self.frames = 0
        self._kernel: Any = None
        self._task: asyncio.Task[None] | None = None
        self._reset_stream()

    def _reset_stream(self) -> None:
        self._ref = np.zeros((0, 0), np.float32)  # reference audio from sample _ref_start on
        self._ref_start: int | None = None
        self._ref_end = 0  # the sample after the last reference sample placed
        self._ref_rate = 0
        self._ref_done = False
        self._ref_error: BaseException | None = None
        self._arrived = asyncio.Event()
        self._stalled = False
        self._next: int | None = None  # the near-end sample clock
        self._out_pos: int | None = None
        self._rate = 0

    def params(self) -> dict[str, Any]:
        raise config_error(self.name, "EchoCancel has no manifest form (its reference is a stream)")

    @property
    def kernel(self) -> Any:
        return self._kernel

    async def initialize(self) -> None:
        self._kernel, self.backend, self.backend_reason = select_kernel(
            self.name,
            self.requested_backend,
            "EchoCancelKernel",
            EchoCancelKernel,
            {"filter_ms": self.filter_ms, "frame_ms": self.frame_ms},
            self.force_python,
        )
        self._reset_stream()
        self._task = asyncio.get_running_loop().create_task(self._read_reference())

    def _error(self, message: str) -> FormatError:
        err = FormatError(f"{self.name}: {message}")
        err.stage = self.name
        return err

    async def _read_reference(self) -> None:
        try:
            items = self.reference
            if isinstance(items, AsyncIterable):
                async for item in items:
                    self._place(item)
            else:
                for item in items:
                    self._place(item)
                    await asyncio.sleep(0)
        except Exception as exc:  # surfaced by the next near-end frame
            self._ref_error = exc
        finally:
            self._ref_done = True
            self._arrived.set()

    @staticmethod
    def _start(frame: AudioFrame, rate: int) -> int | None:
        if frame.pts is None or frame.time_base is None:
            return None
        return round(frame.pts * frame.time_base * rate)

    def _place(self, item: Any) -> None:
        if not isinstance(item, AudioFrame):
            return  # events and video beside the played audio are not reference
        if not item.planar or item.samples.dtype != np.float32:
            raise self._error(f"reference: expects float32 planar audio, got {item.format}")
        rate = self._ref_rate or item.sample_rate
        if item.sample_rate != rate:
            raise self._error("reference: sample rate changed mid-stream")
        self._ref_rate = rate
        x = item.samples
        start = self._start(item, rate)
        if start is None or (self._ref_start is not None and abs(start - self._ref_end) <= 1):
            start = self._ref_end if self._ref_start is not None else (start or 0)
        if self._ref_start is None:
            self._ref_start = self._ref_end = start
            self._ref = np.zeros((x.shape[0], 0), np.float32)
        if x.shape[0] != self._ref.shape[0]:
            raise self._error("reference: channel count changed mid-stream")
        if start > self._ref_end:  # a gap: silence
            gap = np.zeros((x.shape[0], start - self._ref_end), np.float32)
            self._ref = np.concatenate([self._ref, gap], axis=1)
            self._ref_end = start
        skip = self._ref_end - start  # overlap with audio already placed keeps the earlier
        if skip < x.shape[1]:
            self._ref = np.concatenate([self._ref, x[:, skip:]], axis=1)
            self._ref_end = start + x.shape[1]
        self._arrived.set()

    def _far_for(self, start: int, n: int, channels: int) -> tuple[Block, bool]:
        """Reference samples ``[start, start + n)`` (silence where there are none), and whether
        all of them were there."""
        far = np.zeros((channels, n), np.float32)
        if self._ref_start is None:
            return far, False
        a, b = max(start, self._ref_start), min(start + n, self._ref_end)
        if b > a:
            far[:, a - start : b - start] = self._ref[:, a - self._ref_start : b - self._ref_start]
        # Reference audio before this frame is no longer needed.
        drop = min(max(0, start + n - self._ref_start), self._ref.shape[1])
        self._ref = self._ref[:, drop:]
        self._ref_start += drop
        return far, a == start and b == start + n

    async def process(self, item: Any) -> AsyncIterator[Any]:
        if not isinstance(item, AudioFrame):
            yield item  # video and other items pass by
            return
        if not item.planar or item.samples.dtype != np.float32:
            raise self._error(f"expects float32 planar audio (fltp), got {item.format}")
        rate = item.sample_rate
        if self._rate == 0:
            self._rate = rate
        n = item.samples.shape[1]
        start = self._start(item, rate)
        if start is None or (self._next is not None and abs(start - self._next) <= 1):
            start = self._next if self._next is not None else 0
        if self._out_pos is None:
            self._out_pos = start
        self._next = start + n
        # Wait (bounded) for the reference to cover this frame; a stalled reference is not
        # waited for again until it delivers audio for the current time.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.stall_ms / 1000
        while not self._ref_done and self._ref_end < start + n and not self._stalled:
            self._arrived.clear()
            left = deadline - loop.time()
            if left <= 0:
                self._stalled = True
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), left)
        if self._ref_error is not None:
            err = self._error(f"reference failed: {self._ref_error}")
            raise err from self._ref_error
        if self._ref_rate and self._ref_rate != rate:
            raise self._error(
                f"reference at {self._ref_rate} Hz, near-end at {rate} Hz; resample the reference"
            )
        channels = self._ref.shape[0] if self._ref_start is not None else 1
        far, complete = self._far_for(start, n, max(channels, 1))
        if complete:
            self._stalled = False
        else:
            self.unreferenced_frames += 1
        self.frames += 1
        for out in self._emit(self._kernel.process(item.samples, far, rate)):
            yield out

    def _emit(self, blocks: list[Block]) -> list[Any]:
        out: list[Any] = []
        for b in blocks:
            out.append(AudioFrame(b, self._rate, pts=self._out_pos))
            assert self._out_pos is not None
            self._out_pos += b.shape[1]
        return out

    def flush(self) -> list[Any]:
        out = self._emit(self._kernel.flush()) if self._kernel is not None else []
        self._next = self._out_pos = None
        return out

    async def cleanup(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None


def echo_scene(
    seconds: float = 20.0,
    rate: int = 16000,
    double_talk: tuple[float, float] = (12.0, 15.0),
    seed: int = 0,
) -> dict[str, Any]:
    """A synthetic echo path for tests and benchmarks (float64 signals, one row each).

    ``far``: speech-like far-end (``stream.testing.speech_like``, seed ``seed + 1``); ``echo``: it
    through a room response of exponentially decaying Gaussian noise (150 ms, 30 ms time constant,
    so about 60 dB down at 200 ms) after a 10 ms direct-path delay, scaled to -6 dB energy gain;
    ``near``: another speech-like signal (seed ``seed + 2``, x0.7) during ``double_talk`` only;
    ``noise``: white, -60 dBFS; ``mic = echo + near + noise``.
    """
    from stream.testing import speech_like

    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    far = speech_like(seconds, seed=seed + 1, rate=rate)
    taps = int(0.150 * rate)
    rir = rng.standard_normal(taps) * np.exp(-np.arange(taps) / (0.030 * rate))
    rir = np.concatenate([np.zeros(int(0.010 * rate)), rir])
    rir *= 0.5 / np.sqrt(np.sum(rir**2))
    echo = np.convolve(far, rir)[:n]
    near = 0.7 * speech_like(seconds, seed=seed + 2, rate=rate)
    a, b = (int(t * rate) for t in double_talk)
    near[:a] = 0.0
    near[b:] = 0.0
    noise = 10 ** (-60 / 20) * rng.standard_normal(n)
    return {
        "rate": rate,
        "far": far,
        "echo": echo,
        "near": near,
        "noise": noise,
        "mic": echo + near + noise,
        "double_talk": double_talk,
    }
