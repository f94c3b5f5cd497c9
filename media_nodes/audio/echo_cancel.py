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
``SpeakerSink.reference()``) in a task, places it on the near-end's sample clock by timestamps
(resampled to the near-end's rate if need be) and feeds both to the kernel; near-end audio with no
reference audio for its time is processed against silence (it passes through, minus the tail of
the echo of earlier far-end audio) and counted. ``reference="peer"`` is the audio a WebRTC
session sends to its peer, bound by the session (stream/transport/echo_reference.py); its echo
comes back a network round trip later, so the bulk delay is found from the signals
(``delay_ms="auto"``, ``DelayEstimator``) and the filter's window moved there.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import math
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any

import numpy as np
import numpy.typing as npt

from stream.engine import select_kernel
from stream.errors import BackendUnavailable, FormatError
from stream.frames import AudioFrame
from stream.kernel import Block, PyKernel, config_error
from stream.node import Node

from .level_meter import as_number
from .resample import ResampleKernel

log = logging.getLogger("media_nodes.audio")

LIBRARY = "libspeexdsp.so.1"
MIN_RATE, MAX_RATE = 8000, 96000
FILTER_MS = (10.0, 2000.0)
FRAME_MS = (2.0, 100.0)
DELAY_MS = (0.0, 10000.0)
#: ``EchoCancel(reference=PEER)``: the audio a WebRTC session sends to its peer
PEER = "peer"
MAX_GAP_S = 1.0  # a reference whose clock jumps further restarts (no silence filled in)
MAX_AHEAD_S = 2.0  # reference read ahead of the near-end before the reader waits
#: ``delay_ms="auto"``: the bulk delay is estimated from the signals (``DelayEstimator``)
AUTO = "auto"
AUTO_MAX_DELAY_MS = 1000.0  # the longest bulk delay "auto" looks for
AUTO_MARGIN_MS = 20.0  # the filter's window starts this long before the estimated echo
EST_RATE = 8000  # about the rate the estimator works at (an integer fraction of the stream's)
EST_WINDOW_S = 4.0  # near-end audio each estimate looks at
EST_HOP_S = 0.5  # an estimate every half second of near-end
EST_LAG_S = 0.1  # ... of audio this much older than the newest
EST_RATIO = 10.0  # a peak this far over the mean is an echo (uncorrelated: about 5)
EST_AGREE_MS = 2.0  # two estimates in a row within this are believed
SILENT = 1e-3  # -60 dBFS: no estimate when either side is quieter
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


class DelayEstimator:
    """The bulk delay of an echo path: where the near-end best matches the reference.

    Both signals are written by absolute sample position (``add_near``, ``add_far``: the
    reference at delay 0, on the near-end's clock) into rings of the last few seconds.
    ``estimate(at)`` takes the ``window_s`` of near-end ending ``lag_s`` before position ``at``
    (the reference must be written up to there: it may arrive a little after the near-end), averages
    both to about 8 kHz, and cross-correlates them with the phase transform (GCC-PHAT: the
    spectrum whitened, so the peak is sharp on speech) over delays 0 to ``max_delay_ms``. It
    returns ``(delay_ms, ratio)``, ``ratio`` being the peak over the mean magnitude (uncorrelated
    signals give about 5, the echo of speech through Opus both ways 15 to 40), or None when
    either side is silent (under -60 dBFS) or less than a second of near-end was seen.
    """

    def __init__(
        self,
        rate: int,
        max_delay_ms: float = AUTO_MAX_DELAY_MS,
        window_s: float = EST_WINDOW_S,
        lag_s: float = EST_LAG_S,
    ) -> None:
        self.rate = rate
        self.step = max(1, rate // EST_RATE)
        self.window = round(window_s * rate)
        self.lag = round(lag_s * rate)
        self.max_delay = round(max_delay_ms * rate / 1000)
        self.size = self.window + self.max_delay + self.lag + 2 * rate
        self._near = _Ring(self.size)
        self._far = _Ring(self.size)

    def add_near(self, pos: int, x: Block) -> None:
        self._near.write(pos, x[0] if x.shape[0] == 1 else x.mean(axis=0))

    def add_far(self, pos: int, x: Block) -> None:
        self._far.write(pos, x[0] if x.shape[0] == 1 else x.mean(axis=0))

    def estimate(self, at: int) -> tuple[float, float] | None:
        end = at - self.lag
        start = max(end - self.window, self._near.first if self._near.first is not None else end)
        q = self.step
        start = end - (end - start) // q * q
        if end - start < self.rate:
            return None
        near = self._near.read(start, end)
        far = self._far.read(start - self.max_delay, end)
        if _rms(near) < SILENT or _rms(far[self.max_delay :]) < SILENT:
            return None
        nd = near.reshape(-1, q).mean(axis=1)
        fd = far[: far.shape[0] // q * q].reshape(-1, q).mean(axis=1)
        size = 1 << int(np.ceil(np.log2(nd.shape[0] + fd.shape[0])))
        cross = np.fft.rfft(nd, size) * np.conj(np.fft.rfft(fd, size))
        cross /= np.abs(cross) + 1e-12
        c = np.fft.irfft(cross, size)
        # near[i] matches far[i + offset - lag] at lag (decimated samples), offset = max_delay / q
        offset = self.max_delay // q
        lags = np.arange(offset + 1)
        values = c[(lags - offset) % size]
        best = int(np.argmax(values))
        ratio = float(values[best] / max(float(np.mean(np.abs(values))), 1e-30))
        return best * q * 1000 / self.rate, ratio


def _rms(x: np.ndarray[Any, np.dtype[np.float32]]) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


class _Ring:
    """Mono samples by absolute position over the last ``size``; positions never written (gaps,
    before the first write) read as silence."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.buf = np.zeros(size, np.float32)
        self.first: int | None = None
        self.end = 0  # after the newest position written

    def write(self, pos: int, x: np.ndarray[Any, np.dtype[np.float32]]) -> None:
        n = x.shape[0]
        if self.first is None or pos > self.end + self.size or pos + n < self.end - self.size:
            self.buf[:] = 0.0  # the first audio, or a jump: start over
            self.first = pos
        elif pos > self.end:  # a gap: silence
            self._put(self.end, np.zeros(pos - self.end, np.float32))
        if n > self.size:
            pos, x, n = pos + n - self.size, x[-self.size :], self.size
        self._put(pos, x)
        self.end = max(self.end, pos + n)
        self.first = min(self.first, pos)

    def _put(self, pos: int, x: np.ndarray[Any, np.dtype[np.float32]]) -> None:
        n = min(x.shape[0], self.size)
        at = pos % self.size
        first = min(n, self.size - at)
        self.buf[at : at + first] = x[:first]
        self.buf[: n - first] = x[first:n]

    def read(self, a: int, b: int) -> np.ndarray[Any, np.dtype[np.float32]]:
        out = np.zeros(b - a, np.float32)
        if self.first is None:
            return out
        lo, hi = max(a, self.first, self.end - self.size), min(b, self.end)
        if hi > lo:
            idx = np.arange(lo, hi) % self.size
            out[lo - a : hi - a] = self.buf[idx]
        return out


class EchoCancel(Node):
    """Cancel the echo of ``reference`` (the far-end audio the speaker plays) in the near-end.

    ``reference``: an async (or plain) iterable of float32 planar AudioFrames, such as
    ``SpeakerSink.reference()``, read once by a task started at ``initialize()``; or ``"peer"``:
    the audio a WebRTC session sends to its peer, bound by the session (``use_reference``)
    before the pipeline starts. A reference at another rate than the near-end's is resampled.
    Near-end frames must be mono float32 planar. ``filter_ms`` is the longest echo path modelled
    (default 200 ms); ``delay_ms`` a bulk delay of the echo path the reference is moved by first
    (the filter covers ``delay_ms`` to ``delay_ms + filter_ms``), a number or ``"auto"``
    (estimated from the signals, up to 1 s; None: ``"auto"`` for ``"peer"``, else 0);
    ``frame_ms`` the kernel's frame (20 ms); ``stall_ms`` how long a near-end frame waits for
    reference audio covering it before it is processed against silence. Output frames are whole
    kernel frames, timed on the near-end's sample clock; with ``"auto"`` an ``echo_delay`` event
    says when the bulk delay was found or moved. Raises ConfigError for bad settings.
    """

    accepts_any = True

    def __init__(
        self,
        reference: AsyncIterable[Any] | Iterable[Any] | str,
        filter_ms: float = 200.0,
        frame_ms: float = 20.0,
        stall_ms: float = 50.0,
        delay_ms: float | str | None = None,
        *,
        name: str | None = None,
        backend: str | None = None,
    ) -> None:
        super().__init__(name=name)
        stage = self.name
        if isinstance(reference, str | bytes) and reference != PEER:
            raise config_error(
                stage,
                f"reference must be a stream of AudioFrames or {PEER!r} (the audio a WebRTC "
                f"session sends to its peer), got {reference!r}",
            )
        if not isinstance(reference, str | AsyncIterable | Iterable):
            raise config_error(
                stage,
                f"reference must be an iterable or async iterable of AudioFrames or {PEER!r}, "
                f"got {type(reference).__name__}",
            )
        self.reference = reference
        self.filter_ms = _check_range(stage, "filter_ms", filter_ms, FILTER_MS)
        self.frame_ms = _check_range(stage, "frame_ms", frame_ms, FRAME_MS)
        self.stall_ms = _check_range(stage, "stall_ms", stall_ms, (0.0, 60000.0))
        if delay_ms is None:
            delay_ms = AUTO if isinstance(reference, str) else 0.0
        if isinstance(delay_ms, str) and delay_ms != AUTO:
            raise config_error(
                stage,
                f"delay_ms must be a number in [{DELAY_MS[0]}, {DELAY_MS[1]}] or {AUTO!r}, "
                f"got {delay_ms!r}",
            )
        self.delay_ms: float | str = (
            AUTO if delay_ms == AUTO else _check_range(stage, "delay_ms", delay_ms, DELAY_MS)
        )
        self.requested_backend = backend
        self.backend = "unset"
        self.backend_reason = "not initialized"
        #: near-end frames processed with no reference audio for (part of) their time
        self.unreferenced_frames = 0
        #: times a near-end frame waited stall_ms for the reference in vain (each logged)
        self.stalls = 0
        self.frames = 0
        #: the bulk delay in use (ms) and, with "auto", the last estimate (ms) and its ratio
        self.bulk_delay_ms = 0.0 if self.delay_ms == AUTO else float(self.delay_ms)
        self.delay_estimate_ms: float | None = None
        self.delay_changes = 0
        self._bound: AsyncIterable[Any] | Iterable[Any] | None = None
        self._kernel: Any = None
        self._task: asyncio.Task[None] | None = None
        self._reset_stream()

    @property
    def auto_delay(self) -> bool:
        return self.delay_ms == AUTO

    def _reset_stream(self) -> None:
        self._incoming: deque[AudioFrame] = deque()  # read, not yet placed (rate unknown)
        self._incoming_s = 0.0
        self._ref = np.zeros((0, 0), np.float32)  # reference audio from sample _ref_start on
        self._ref_start: int | None = None
        self._ref_end = 0  # the sample after the last reference sample placed
        self._ref_rate = 0
        self._ref_next: int | None = None  # the reference's own clock (at its rate)
        self._resampler: Any = None
        self._res_pos = 0
        self._ref_done = False
        self._ref_error: BaseException | None = None
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._stalled = False
        self._next: int | None = None  # the near-end sample clock
        self._out_pos: int | None = None
        self._rate = 0
        self._delay = 0  # bulk delay in samples at the near-end rate
        self._estimator: DelayEstimator | None = None
        self._next_estimate = 0  # the near-end position of the next estimate
        self._far_copied = 0  # the estimator has the reference up to here
        self._candidate: float | None = None
        self._delay_found = False
        if self.auto_delay:
            self.bulk_delay_ms = 0.0
            self.delay_estimate_ms = None

    @property
    def peer_reference(self) -> bool:
        """True when the reference is ``"peer"``: a WebRTC session binds it."""
        return isinstance(self.reference, str)

    def use_reference(self, reference: AsyncIterable[Any] | Iterable[Any]) -> None:
        """Bind the stream a ``reference="peer"`` node reads; call it before ``initialize()``.

        A WebRTC session does this with the audio it sends to its peer. Raises ConfigError for a
        node built with a stream of its own.
        """
        if not self.peer_reference:
            raise config_error(self.name, "use_reference() is for reference='peer' only")
        self._bound = reference

    def params(self) -> dict[str, Any]:
        if not self.peer_reference:
            raise config_error(
                self.name,
                "EchoCancel has a manifest form only with reference='peer' (a stream is not JSON)",
            )
        return {
            "reference": PEER,
            "filter_ms": self.filter_ms,
            "frame_ms": self.frame_ms,
            "stall_ms": self.stall_ms,
            "delay_ms": self.delay_ms,
        }

    @property
    def kernel(self) -> Any:
        return self._kernel

    async def initialize(self) -> None:
        items = self._bound if self.peer_reference else self.reference
        if items is None:
            raise config_error(
                self.name,
                "reference='peer' is the audio a WebRTC session sends to its peer: serve this "
                "pipeline (remotemedia serve), or bind a stream with use_reference()",
            )
        self._kernel, self.backend, self.backend_reason = select_kernel(
            self.name,
            self.requested_backend,
            "EchoCancelKernel",
            EchoCancelKernel,
            {"filter_ms": self.filter_ms, "frame_ms": self.frame_ms},
            self.force_python,
        )
        self._reset_stream()
        assert not isinstance(items, str)
        self._task = asyncio.get_running_loop().create_task(self._read_reference(items))

    def _error(self, message: str) -> FormatError:
        err = FormatError(f"{self.name}: {message}")
        err.stage = self.name
        return err

    async def _read_reference(self, items: AsyncIterable[Any] | Iterable[Any]) -> None:
        try:
            if isinstance(items, AsyncIterable):
                async for item in items:
                    await self._take(item)
            else:
                for item in items:
                    await self._take(item)
                    await asyncio.sleep(0)
        except Exception as exc:  # surfaced by the next near-end frame
            self._ref_error = exc
        finally:
            self._ref_done = True
            self._arrived.set()

    async def _take(self, item: Any) -> None:
        """Queue a reference frame for the near-end side; wait while the reference is more than
        MAX_AHEAD_S ahead of the near-end (a live source then drops its oldest)."""
        if not isinstance(item, AudioFrame):
            return  # events and video beside the played audio are not reference
        self._incoming.append(item)
        self._incoming_s += item.duration
        self._arrived.set()
        while self._ahead_s() > MAX_AHEAD_S:
            self._room.clear()
            await self._room.wait()

    def _ahead_s(self) -> float:
        placed = 0.0
        if self._rate and self._ref_start is not None:
            near = self._next if self._next is not None else self._ref_start
            placed = max(0, self._ref_end - max(near, self._ref_start)) / self._rate
        return self._incoming_s + placed

    @staticmethod
    def _start(frame: AudioFrame, rate: int) -> int | None:
        if frame.pts is None or frame.time_base is None:
            return None
        return round(frame.pts * frame.time_base * rate)

    def _drain(self) -> None:
        """Place the queued reference frames on the near-end's clock (its rate is known)."""
        while self._incoming:
            item = self._incoming.popleft()
            self._incoming_s -= item.duration
            self._place(item)
        self._incoming_s = 0.0
        self._room.set()

    def _place(self, item: AudioFrame) -> None:
        if not item.planar or item.samples.dtype != np.float32:
            raise self._error(f"reference: expects float32 planar audio, got {item.format}")
        rate = self._ref_rate or item.sample_rate
        if item.sample_rate != rate:
            raise self._error("reference: sample rate changed mid-stream")
        self._ref_rate = rate
        x = item.samples
        start = self._start(item, rate)
        nxt = self._ref_next
        if start is None or (nxt is not None and abs(start - nxt) <= 1):
            start = nxt if nxt is not None else (start or 0)
        fresh = nxt is None or start != nxt
        self._ref_next = start + x.shape[1]
        if rate == self._rate:
            self._put(start, x)
            return
        # Another rate than the near-end's: resample on the reference's own clock, restarting the
        # filter where that clock jumps; its output lags its input by the filter's delay.
        if self._resampler is None:
            self._resampler, _, _ = select_kernel(
                self.name,
                self.requested_backend,
                "ResampleKernel",
                ResampleKernel,
                {"sample_rate": self._rate},
                self.force_python,
            )
        if fresh:
            self._resampler.reset()
        blocks = self._resampler.process(x, rate)
        if fresh:
            self._res_pos = round(start * self._rate / rate) - int(self._resampler.latency_samples)
        for b in blocks:
            self._put(self._res_pos, b)
            self._res_pos += int(b.shape[1])

    def _put(self, start: int, x: Block) -> None:
        """Reference samples ``x`` at near-end sample ``start`` (before the bulk delay)."""
        limit = round(MAX_GAP_S * self._rate)
        if self._ref_start is None or abs(start - self._ref_end) > limit:
            # The first audio, or a jump of over MAX_GAP_S: the reference restarts here.
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

    def _keep(self) -> int:
        """Reference samples kept behind the near-end: the bulk delay, or with "auto" the
        longest one it may move to."""
        if self.auto_delay:
            return round(AUTO_MAX_DELAY_MS * self._rate / 1000)
        return self._delay

    def _trim(self, upto: int) -> None:
        """Drop reference audio before ``upto``: no frame needs it any more."""
        if self._ref_start is None:
            return
        drop = min(max(0, upto - self._ref_start), self._ref.shape[1])
        if drop:
            self._ref = self._ref[:, drop:]
            self._ref_start += drop
            self._room.set()

    def _far_for(self, start: int, n: int, channels: int) -> tuple[Block, bool]:
        """Reference samples ``[start, start + n)`` (silence where there are none), and whether
        all of them were there."""
        far = np.zeros((channels, n), np.float32)
        if self._ref_start is None:
            return far, False
        a, b = max(start, self._ref_start), min(start + n, self._ref_end)
        if b > a:
            far[:, a - start : b - start] = self._ref[:, a - self._ref_start : b - self._ref_start]
        return far, a == start and b == start + n

    async def process(self, item: Any) -> AsyncIterator[Any]:
        if not isinstance(item, AudioFrame):
            yield item  # video and other items pass by
            return
        if not item.planar or item.samples.dtype != np.float32:
            raise self._error(f"expects float32 planar audio (fltp), got {item.format}")
        rate = item.sample_rate
        n = item.samples.shape[1]
        start = self._start(item, rate)
        if start is None or (self._next is not None and abs(start - self._next) <= 1):
            start = self._next if self._next is not None else 0
        elif self._estimator is not None:  # the near-end's clock jumped: estimate from here
            self._next_estimate = start + round(EST_HOP_S * rate)
            self._far_copied = start - self._estimator.max_delay
        if self._rate == 0:
            self._rate = rate
            self._delay = round(self.bulk_delay_ms * rate / 1000)
            if self.auto_delay:
                self._estimator = DelayEstimator(rate)
                self._next_estimate = start + round(EST_HOP_S * rate)
                self._far_copied = start - self._estimator.max_delay
        if self._out_pos is None:
            self._out_pos = start
        self._next = start + n
        # Wait (bounded) for the reference to cover this frame (with "auto", also what the
        # estimator reads next); a stalled reference is not waited for again until it delivers
        # audio for the current time.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.stall_ms / 1000
        while True:
            if rate == self._rate and self._ref_error is None:
                self._drain()
                self._trim(start - self._keep())
            back = min(self._delay, round(EST_LAG_S * rate)) if self.auto_delay else self._delay
            covered = self._ref_start is not None and self._ref_end >= start + n - back
            if self._ref_done or covered or self._stalled or self._ref_error is not None:
                break
            left = deadline - loop.time()
            if left <= 0:
                self._stalled = True
                self.stalls += 1
                log.log(
                    logging.WARNING if self._ref_start is not None else logging.INFO,
                    "%s: no reference audio for %.0f ms at %.3f s; processing against silence",
                    self.name,
                    self.stall_ms,
                    start / rate,
                )
                break
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):  # wait_for can swallow a cancel on 3.11
                    await self._arrived.wait()
        if self._ref_error is not None:
            err = self._error(f"reference failed: {self._ref_error}")
            raise err from self._ref_error
        channels = max(self._ref.shape[0], 1) if self._ref_start is not None else 1
        outs: list[Any] = []
        complete = True
        pos, x = start, item.samples
        while x.shape[1]:
            # Cut at the estimator's next position, so where the delay may move does not
            # depend on how the stream was split.
            cut = x.shape[1]
            if self._estimator is not None:
                cut = min(cut, max(1, self._next_estimate - pos))
            part, x = x[:, :cut], x[:, cut:]
            far, whole = self._far_for(pos - self._delay, cut, channels)
            complete = complete and whole
            if self._estimator is not None:
                self._estimator.add_near(pos, part)
            outs += self._emit(self._kernel.process(part, far, rate))
            pos += cut
            if self._estimator is not None and pos >= self._next_estimate:
                outs += self._estimate(pos)
                self._next_estimate = pos + round(EST_HOP_S * rate)
        self._trim(pos - self._keep())
        if complete:
            self._stalled = False
        else:
            self.unreferenced_frames += 1
        self.frames += 1
        for out in outs:
            yield out

    def _estimate(self, at: int) -> list[Any]:
        """Estimate the bulk delay at near-end position ``at``; move it when the echo left the
        filter's window (an ``echo_delay`` event, the kernel flushed: its filter was for the old
        delay)."""
        estimator = self._estimator
        assert estimator is not None
        # The reference up to what this estimate reads, copied now: all of it has been placed
        # (process() waited for it) and none trimmed yet (the node keeps AUTO_MAX_DELAY_MS).
        end = at - estimator.lag
        self._far_copied = max(self._far_copied, end - estimator.size)
        if end > self._far_copied:
            channels = max(self._ref.shape[0], 1) if self._ref_start is not None else 1
            far, _ = self._far_for(self._far_copied, end - self._far_copied, channels)
            estimator.add_far(self._far_copied, far)
            self._far_copied = end
        found = estimator.estimate(at)
        if found is None or found[1] < EST_RATIO:
            self._candidate = None
            return []
        lag_ms, ratio = found
        previous, self._candidate = self._candidate, lag_ms
        if previous is None or abs(previous - lag_ms) > EST_AGREE_MS:
            return []  # two estimates in a row must agree
        self.delay_estimate_ms = lag_ms
        current = self.bulk_delay_ms
        inside = current <= lag_ms <= current + self.filter_ms / 2
        if self._delay_found and inside:
            return []
        self._delay_found = True
        outs: list[Any] = []
        if not inside:
            self.bulk_delay_ms = max(0.0, round(lag_ms - AUTO_MARGIN_MS, 3))
            self._delay = round(self.bulk_delay_ms * self._rate / 1000)
            self.delay_changes += 1
            outs += self._emit(self._kernel.flush())
        outs.append(
            self.event(
                "echo_delay",
                at / self._rate,
                delay_ms=self.bulk_delay_ms,
                estimate_ms=round(lag_ms, 3),
                ratio=round(ratio, 1),
            )
        )
        return outs

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


def room_response(rate: int, rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Exponentially decaying Gaussian noise (150 ms, 30 ms time constant, so about 60 dB down at
    200 ms) after a 10 ms direct-path delay, scaled to -6 dB energy gain."""
    taps = int(0.150 * rate)
    rir = rng.standard_normal(taps) * np.exp(-np.arange(taps) / (0.030 * rate))
    rir = np.concatenate([np.zeros(int(0.010 * rate)), rir])
    rir *= 0.5 / np.sqrt(np.sum(rir**2))
    return rir


def echo_scene(
    seconds: float = 20.0,
    rate: int = 16000,
    double_talk: tuple[float, float] | None = (12.0, 15.0),
    seed: int = 0,
    near_gain: float = 0.7,
    path_change_s: float | None = None,
) -> dict[str, Any]:
    """A synthetic echo path for tests and benchmarks (float64 signals, one row each).

    ``far``: speech-like far-end (``stream.testing.speech_like``, seed ``seed + 1``); ``echo``: it
    through ``room_response`` (150 ms of decaying noise after 10 ms, -6 dB); from
    ``path_change_s`` on (if given) through another such room (the speaker or the microphone
    moved); ``near``: another speech-like signal (seed ``seed + 2``, times ``near_gain``) during
    ``double_talk`` only (None: never); ``noise``: white, -60 dBFS; ``mic = echo + near +
    noise``.
    """
    from stream.testing import speech_like

    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    far = speech_like(seconds, seed=seed + 1, rate=rate)
    echo = np.convolve(far, room_response(rate, rng))[:n]
    if path_change_s is not None:
        moved = np.convolve(far, room_response(rate, np.random.default_rng(seed + 100)))[:n]
        at = int(path_change_s * rate)
        echo = np.concatenate([echo[:at], moved[at:]])
    near = near_gain * speech_like(seconds, seed=seed + 2, rate=rate)
    if double_talk is None:
        near[:] = 0.0
    else:
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
        "path_change_s": path_change_s,
    }
