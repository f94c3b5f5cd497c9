"""EchoCancel: remove the echo of what the loudspeaker plays from the microphone signal.

The node, ``EchoCancel(reference)``, reads the far-end stream (what the speaker played, e.g.
``SpeakerSink.reference()``) in a task, places it on the near-end's sample clock by timestamps
(resampled to the near-end's rate if need be) and feeds both to the kernel the ``algorithm``
names: our frequency-domain Kalman canceller (``KalmanAecKernel``: kalman_kernel.py, the
default; no system library), WebRTC's AEC3 (``Aec3Kernel``: aec3_kernel.py, the canceller browsers
run) or Speex's MDF canceller (``EchoCancelKernel``: echo_cancel_kernel.py, needs libspeexdsp).
Near-end audio with no reference audio for its time is processed against silence (it passes
through, minus the tail of the echo of earlier far-end audio) and counted. ``reference="peer"``
is the audio a WebRTC session sends to its peer, bound by the session
(stream/transport/echo_reference.py); its echo comes back a network round trip later, so the
bulk delay is found from the signals (``delay_ms="auto"``, ``DelayEstimator``: echo_delay.py)
and the filter's window moved there. A ``playout_shift`` event in the near-end stream (a call's
playout buffer stretched or dropped audio) moves where the node reads the reference by as much,
so the echo stays where the filter learnt it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Any

import numpy as np

from stream.audio_adapter import AudioAdapter
from stream.engine import select_kernel
from stream.errors import FormatError, StreamError
from stream.events import PLAYOUT_SHIFT, Event
from stream.frames import AudioFrame, audio_frame_unchecked
from stream.kernel import Block, config_error
from stream.kernel_node import KernelBacked, check_audio
from stream.node import Node

from .aec3_kernel import Aec3Kernel
from .echo_cancel_kernel import EchoCancelKernel
from .echo_delay import (
    AUTO_MAX_DELAY_MS,
    EST_AGREE_MS,
    EST_HOP_S,
    EST_LAG_S,
    EST_RATIO,
    EST_SEARCH_HOP_S,
    EST_SEARCH_S,
    Estimator,
    delay_estimator,
)
from .echo_settings import (  # noqa: F401 - DELAY_MS: its old home
    AEC3,
    AEC3_SETTINGS,
    AUTO,
    DELAY_MS,
    KALMAN,
    KALMAN_SETTINGS,
    SETTINGS,
    SPEEX,
)
from .kalman_kernel import KalmanAecKernel

log = logging.getLogger("media_nodes.audio")

#: ``EchoCancel(reference=PEER)``: the audio a WebRTC session sends to its peer
PEER = "peer"
MAX_GAP_S = 1.0  # a reference whose clock jumps further restarts (no silence filled in)
MAX_AHEAD_S = 2.0  # reference read ahead of the near-end before the reader waits
AUTO_MARGIN_MS = 20.0  # the filter's window starts this long before the estimated echo
MAX_SHIFT_MS = 10_000.0  # the largest move one playout_shift event may announce
#: Kalman's filter while "auto" searches (from the stream's start until the first delay is found,
#: or EST_SEARCH_S): an echo this late is cancelled before its delay is known; then the filter is
#: cut to ``filter_ms`` around the echo, keeping what it learnt.
KALMAN_SEARCH_MS = 600.0
#: How far past the bulk delay AEC3 finds an echo itself (its delay search reaches about 450 ms:
#: docs/aec3-evaluation.md); "auto" moves the bulk delay for AEC3 only when the echo is further.
AEC3_REACH_MS = 400.0
#: ``algorithm`` -> (the engine's kernel class name, the Python twin, the kernel's settings)
KERNELS: dict[str, tuple[str, type[Any], Any]] = {
    AEC3: ("Aec3Kernel", Aec3Kernel, AEC3_SETTINGS),
    SPEEX: ("EchoCancelKernel", EchoCancelKernel, SETTINGS),
    KALMAN: ("KalmanAecKernel", KalmanAecKernel, KALMAN_SETTINGS),
}


class EchoCancel(KernelBacked, Node):
    """Cancel the echo of ``reference`` (the far-end audio the speaker plays) in the near-end.

    ``reference``: an async (or plain) iterable of float32 planar AudioFrames, such as
    ``SpeakerSink.reference()``, read once by a task started at ``initialize()``; or ``"peer"``:
    the audio a WebRTC session sends to its peer, bound by the session (``use_reference``)
    before the pipeline starts. A reference at another rate than the near-end's is resampled.
    Near-end frames must be mono float32 planar. ``algorithm``: ``"kalman"`` (default: a
    frequency-domain Kalman filter with a shadow filter and a residual-echo suppressor that
    leaves double talk alone, kalman_aec.py; 8, 16, 32 or 48 kHz), ``"aec3"`` (WebRTC's AEC3,
    the Rust port ``sonora`` or the twin on WebRTC's C++; 8, 16, 32 or 48 kHz, finds echo paths
    up to about 450 ms itself, ``frame_ms`` a multiple of 10) or ``"speex"`` (Speex's MDF from
    libspeexdsp, 8 to 96 kHz). ``filter_ms`` is the longest echo path modelled by Kalman and
    Speex and the width of the window "auto" keeps the echo in (default 200 ms; Kalman with
    "auto" models ``KALMAN_SEARCH_MS``, 600 ms, until the delay is found, at most the first
    ``EST_SEARCH_S``, so a late echo is cancelled before its delay is known); ``delay_ms`` a
    bulk delay of the echo path the reference is moved by first (the filter covers ``delay_ms``
    to ``delay_ms + filter_ms``), a number or ``"auto"`` (estimated from the signals, up to 1 s;
    None: ``"auto"`` for ``"peer"`` and for Kalman, which does not search the delay itself,
    else 0);
    ``frame_ms`` the kernel's frame (20 ms); ``stall_ms`` how long a near-end frame waits for
    reference audio covering it before it is processed against silence. Output is timed on the
    near-end's sample clock and keeps its sample count: output sample ``p`` is near-end sample
    ``p`` (the kernel's delay, ``latency_samples``, taken off: AEC3's first frame after a
    (re)start is that much shorter than a kernel frame, the others whole); with ``"auto"`` an
    ``echo_delay`` event says when the bulk delay was found or moved. A ``playout_shift`` event
    (``stream.events.PLAYOUT_SHIFT``) before a near-end frame says its clock moved against its
    media (a call's playout buffer): the reference is read moved by as much. Raises ConfigError
    for bad settings.
    """

    accepts_any = True
    accepts_events = True  # playout_shift; every event is handed on in order
    settings = SETTINGS
    native_kernel = "KalmanAecKernel"  # the default algorithm's; build_kernel picks by algorithm
    python_kernel = KalmanAecKernel
    filter_ms: float
    frame_ms: float
    stall_ms: float
    delay_ms: float | str  # resolved: "auto" or a number
    algorithm: str

    def __init__(
        self,
        reference: AsyncIterable[Any] | Iterable[Any] | str,
        filter_ms: float = 200.0,
        frame_ms: float = 20.0,
        stall_ms: float = 50.0,
        delay_ms: float | str | None = None,
        *,
        algorithm: str = KALMAN,
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
        self.configure(
            filter_ms=filter_ms,
            frame_ms=frame_ms,
            stall_ms=stall_ms,
            delay_ms=delay_ms,
            algorithm=algorithm,
        )
        if self._settings["delay_ms"] is None:
            searches = isinstance(reference, str) or self._settings["algorithm"] == KALMAN
            self._settings["delay_ms"] = AUTO if searches else 0.0
        self._backend_init(backend)
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
        self._task: asyncio.Task[None] | None = None
        self._reset_stream()

    @property
    def auto_delay(self) -> bool:
        return self.delay_ms == AUTO

    def _reset_stream(self) -> None:
        self._incoming: deque[AudioFrame] = deque()  # read, not yet placed (rate unknown)
        self._incoming_s = 0.0
        self._ref = _PlacedReference()  # reference audio placed, _ref_start to _ref_end
        self._ref_rate = 0
        self._ref_next: int | None = None  # the reference's own clock (at its rate)
        self._resampler: AudioAdapter | None = None
        self._res_pos = 0
        self._ref_done = False
        self._ref_error: BaseException | None = None
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._stalled = False
        self._next: int | None = None  # the near-end sample clock
        self._out_pos: int | None = None
        self._latency = 0  # the kernel's output delay (samples), known from its first block
        self._skip: int | None = None  # warm-up samples still to drop; None: no kernel stream
        self._far_channels = 1  # of the kernel's stream (its drain feeds that many)
        self._rate = 0
        self._delay = 0  # bulk delay in samples at the near-end rate
        #: ms the near-end's clock gained over the media it carries (``playout_shift`` events);
        #: reference and estimator work on the media's positions, near-end pts minus it
        self._moved_ms = 0.0
        self._jump = 0  # a move of the media the kernel's far-end has not followed yet
        self._estimator: Estimator | None = None
        self._next_estimate = 0  # the near-end position of the next estimate
        self._search_until = 0  # estimates come faster until here (or a delay is found)
        self._far_copied = 0  # the estimator has the reference up to here
        self._candidate: float | None = None
        self._delay_found = False
        self._wide = False  # Kalman's filter is KALMAN_SEARCH_MS long while "auto" searches
        if self.auto_delay:
            self.bulk_delay_ms = 0.0
            self.delay_estimate_ms = None

    @property
    def _ref_start(self) -> int | None:
        """The first reference sample kept (None: none placed yet in this stream)."""
        return self._ref.start

    @property
    def _ref_end(self) -> int:
        """The sample after the last reference sample placed."""
        return self._ref.end

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
            "algorithm": self.algorithm,
        }

    def kernel_args(self) -> dict[str, Any]:
        """The arguments of the ``algorithm``'s kernel (Speex and Kalman: filter_ms, frame_ms;
        AEC3: frame_ms), every one explicitly."""
        settings: Any = KERNELS[self.algorithm][2]
        args: dict[str, Any] = settings.kernel_args(self._settings)
        return args

    def build_kernel(self) -> Any:
        """The ``algorithm``'s kernel on the backend the rules pick (``backend``/
        ``backend_reason`` say which and why, and the reason names the algorithm)."""
        native, twin, _ = KERNELS[self.algorithm]
        self._kernel, self.backend, reason = select_kernel(
            self.name, self.requested_backend, native, twin, self.kernel_args(), self.force_python
        )
        self.backend_reason = f"{reason}; algorithm {self.algorithm!r}"
        return self._kernel

    @property
    def latency_samples(self) -> int:
        """The kernel's output delay, in samples (AEC3: 88/128/260/430 at 8/16/32/48 kHz;
        Kalman: one block, 16/32/128/192; Speex: 0; 0 before the stream's first frame), which
        the node takes off the stream: it drops that many warm-up samples and drains as many at
        the end, so output sample ``p`` carries near-end sample ``p``."""
        return self._latency

    async def initialize(self) -> None:
        items = self._bound if self.peer_reference else self.reference
        if items is None:
            raise config_error(
                self.name,
                "reference='peer' is the audio a WebRTC session sends to its peer: serve this "
                "pipeline (remotemedia serve), or bind a stream with use_reference()",
            )
        self.build_kernel()
        self._reset_stream()
        assert not isinstance(items, str)
        self._task = asyncio.get_running_loop().create_task(self._read_reference(items))

    def _error(self, message: str) -> FormatError:
        return FormatError(message, stage=self.name)

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
        check_audio(self.name, item, "reference: ")  # raised by the next near-end frame
        self._incoming.append(item)
        self._incoming_s += item.duration
        self._arrived.set()
        while self._ahead_s() > MAX_AHEAD_S:
            self._room.clear()
            await self._room.wait()

    def _ahead_s(self) -> float:
        placed = 0.0
        if self._rate and self._ref_start is not None:
            near = self._ref_start
            if self._next is not None:
                near = self._next - self._moved(self._rate)
            placed = max(0, self._ref_end - max(near, self._ref_start)) / self._rate
        return self._incoming_s + placed

    @staticmethod
    def _start(frame: AudioFrame, rate: int) -> int | None:
        tb = frame.time_base
        if frame.pts is None or tb is None:
            return None
        if tb.numerator == 1 and tb.denominator == rate:  # pts in samples: the usual case
            return int(frame.pts)
        return round(frame.pts * tb * rate)

    def _drain(self) -> None:
        """Place the queued reference frames on the near-end's clock (its rate is known)."""
        while self._incoming:
            item = self._incoming.popleft()
            self._incoming_s -= item.duration
            self._place(item)
        self._incoming_s = 0.0
        self._room.set()

    def _place(self, item: AudioFrame) -> None:
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
            self._resampler = AudioAdapter(
                sample_rate=self._rate,
                fallback_channels=None,
                backend="python" if self.force_python else self.requested_backend,
                name=self.name,
            )
        if fresh:
            self._resampler.reset()
        placed = audio_frame_unchecked(x, rate, None, None)
        blocks = [f.samples for f in self._resampler.convert(placed)]
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
            self._ref.restart(start, x.shape[0])
        if x.shape[0] != self._ref.channels:
            raise self._error("reference: channel count changed mid-stream")
        if start > self._ref_end:  # a gap: silence
            self._ref.append(None, start - self._ref_end)
        skip = self._ref_end - start  # overlap with audio already placed keeps the earlier
        if skip < x.shape[1]:
            self._ref.append(x[:, skip:], x.shape[1] - skip)

    def _keep(self) -> int:
        """Reference samples kept behind the near-end: the bulk delay, or with "auto" the
        longest one it may move to."""
        if self.auto_delay:
            return round(AUTO_MAX_DELAY_MS * self._rate / 1000)
        return self._delay

    def _trim(self, upto: int) -> None:
        """Drop reference audio before ``upto``: no frame needs it any more."""
        if self._ref.drop(upto):
            self._room.set()

    def _far_for(self, start: int, n: int, channels: int) -> tuple[Block, bool]:
        """Reference samples ``[start, start + n)`` (silence where there are none), and whether
        all of them were there."""
        far = np.zeros((channels, n), np.float32)
        if self._ref_start is None:
            return far, False
        a, b = max(start, self._ref_start), min(start + n, self._ref_end)
        if b > a:
            self._ref.read_into(far[:, a - start : b - start], a)
        return far, a == start and b == start + n

    async def process(self, item: Any) -> AsyncIterator[Any]:
        if not isinstance(item, AudioFrame):
            if type(item) is Event and item.kind == PLAYOUT_SHIFT:
                self._playout_shift(item)
            yield item  # video and other items pass by
            return
        check_audio(self.name, item)
        rate = item.sample_rate
        n = item.samples.shape[1]
        at = self._start(item, rate)  # on the near-end's clock (output)
        continues = at is None or (self._next is not None and abs(at - self._next) <= 1)
        if continues:
            at = self._next if self._next is not None else 0
        assert at is not None
        start = at - self._moved(rate)  # on its media's (reference and estimator)
        if not continues and self._estimator is not None:  # the clock jumped: estimate from here
            self._search_until = start + round(EST_SEARCH_S * rate)
            self._next_estimate = start + self._hop(start)
            self._far_copied = start - self._estimator.max_delay
        if self._rate == 0:
            self._rate = rate
            self._delay = round(self.bulk_delay_ms * rate / 1000)
            if self.auto_delay:
                self._estimator = delay_estimator(rate, self.backend, self.name)
                self._search_until = start + round(EST_SEARCH_S * rate)
                self._next_estimate = start + self._hop(start)
                self._far_copied = start - self._estimator.max_delay
                if self.algorithm == KALMAN and self.filter_ms < KALMAN_SEARCH_MS:
                    self._kernel.set_filter_ms(KALMAN_SEARCH_MS)
                    self._wide = True
        if self._out_pos is None:
            self._out_pos = at
        self._next = at + n
        if self._jump:
            self._follow_jump(start)
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
                    at / rate,
                )
                break
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(left):  # wait_for can swallow a cancel on 3.11
                    await self._arrived.wait()
        if self._ref_error is not None:
            if isinstance(self._ref_error, StreamError) and self._ref_error.stage == self.name:
                raise self._ref_error  # our own check of a reference frame, already named
            err = self._error(f"reference failed: {self._ref_error}")
            raise err from self._ref_error
        channels = self._ref_channels()
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
            blocks = self._kernel.process(part, far, rate)
            if self._skip is None:  # the kernel's stream started: its delay is known now
                self._latency = self._skip = int(self._kernel.latency_samples)
            self._far_channels = channels
            outs += self._emit(blocks)
            pos += cut
            if self._estimator is not None and pos >= self._next_estimate:
                outs += self._estimate(pos)
                if self._wide and pos >= self._search_until:
                    self._narrow()  # no echo found while searching: the usual filter
                self._next_estimate = pos + self._hop(pos)
        self._trim(pos - self._keep())
        if complete:
            self._stalled = False
        else:
            self.unreferenced_frames += 1
        self.frames += 1
        for out in outs:
            yield out

    def _playout_shift(self, event: Event) -> None:
        """The near-end frames after ``event`` carry their media ``shift_ms`` later."""
        shift = event.payload.get("shift_ms")
        if not isinstance(shift, int | float) or not abs(shift) <= MAX_SHIFT_MS:
            raise self._error(f"a {PLAYOUT_SHIFT} event needs 'shift_ms' within {MAX_SHIFT_MS:g}")
        before = self._moved(self._rate)
        self._moved_ms += shift
        self._jump += self._moved(self._rate) - before

    def _follow_jump(self, start: int) -> None:
        """The media jumped by ``_jump`` before the frame at media ``start``: the Kalman
        canceller's far-end follows it, its echo path the same. A stretch (the media repeats)
        re-labels its far-end history; a skip feeds it the far-end of the dropped audio."""
        jump, self._jump = self._jump, 0
        if self.algorithm != KALMAN or self._skip is None or not self._rate:
            return
        if jump < 0:
            channels = self._ref_channels()
            far, _ = self._far_for(start + jump - self._delay, -jump, channels)
            jump += int(self._kernel.advance_far(far))
        if jump:
            self._kernel.rewind_far(jump)

    def _ref_channels(self) -> int:
        """Channels of the reference placed (1 before any)."""
        return max(self._ref.channels, 1) if self._ref_start is not None else 1

    def _moved(self, rate: int) -> int:
        """Samples the near-end's clock gained over its media (``playout_shift`` events)."""
        return round(self._moved_ms * rate / 1000)

    def _hop(self, pos: int) -> int:
        """Samples from ``pos`` to the next estimate: a quarter second while searching (no delay
        found yet, in the first ``EST_SEARCH_S`` of the stream), else half a second."""
        searching = not self._delay_found and pos < self._search_until
        return round((EST_SEARCH_HOP_S if searching else EST_HOP_S) * self._rate)

    def _estimate(self, at: int) -> list[Any]:
        """Estimate the bulk delay at near-end position ``at``; move it when the echo left the
        filter's window (an ``echo_delay`` event; the kernel flushed, its filter was for the old
        delay, unless the Kalman canceller can carry its filters over)."""
        estimator = self._estimator
        assert estimator is not None
        # The reference up to what this estimate reads, copied now: all of it has been placed
        # (process() waited for it) and none trimmed yet (the node keeps AUTO_MAX_DELAY_MS).
        end = at - estimator.lag
        self._far_copied = max(self._far_copied, end - estimator.size)
        if end > self._far_copied:
            channels = self._ref_channels()
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
        inside = current <= lag_ms <= current + self._reach_ms()
        if self._delay_found and inside:
            return []
        self._delay_found = True
        outs: list[Any] = []
        if not inside:
            target_ms = max(0.0, round(lag_ms - AUTO_MARGIN_MS, 3))
            moved = self._carry_over(round(target_ms * self._rate / 1000) - self._delay)
            if moved:  # the kernel kept its filters, moved by whole blocks
                self._delay += moved
                self.bulk_delay_ms = round(self._delay * 1000 / self._rate, 3)
            else:
                self.bulk_delay_ms = target_ms
                self._delay = round(self.bulk_delay_ms * self._rate / 1000)
                outs += self._end_kernel_stream()
            self.delay_changes += 1
        if self._wide:
            self._narrow()  # the search filter cut to the window the echo is in now
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

    def _narrow(self) -> None:
        """End the search filter: Kalman models ``filter_ms`` from the bulk delay on, keeping
        what it learnt there."""
        self._kernel.set_filter_ms(self.filter_ms)
        self._wide = False

    def _carry_over(self, delta: int) -> int:
        """Move the Kalman canceller's filters with a move of the bulk delay by ``delta``
        samples, so what it learnt of the room carries over: the samples it moved by (whole
        blocks), or 0 (another algorithm, no stream yet, a move past its filter): then the
        kernel is flushed and starts over."""
        if self.algorithm != KALMAN or self._skip is None or self._delay + delta < self._latency:
            return 0  # (near 0 the rounding to blocks could take the delay under it)
        return int(self._kernel.shift_far(delta))

    def _reach_ms(self) -> float:
        """How far past the bulk delay the kernel cancels an echo without a move: AEC3 searches
        the delay itself (moving would restart a converged canceller); Speex's and Kalman's
        filters cover ``filter_ms``, and the echo's strongest tap must leave room for the room
        after it."""
        return AEC3_REACH_MS if self.algorithm == AEC3 else self.filter_ms / 2

    def _end_kernel_stream(self) -> list[Any]:
        """Flush the kernel (it resets), first draining its delay with ``latency_samples`` of
        silence, so every near-end sample it took comes out."""
        blocks: list[Block] = []
        if self._skip is not None and self._latency:
            lat = self._latency
            zeros = np.zeros((1, lat), np.float32)
            far = np.zeros((self._far_channels, lat), np.float32)
            blocks += self._kernel.process(zeros, far, self._rate)
        blocks += self._kernel.flush()
        out = self._emit(blocks)
        self._skip = None
        return out

    def _emit(self, blocks: list[Block]) -> list[Any]:
        """Output frames of kernel blocks: the kernel stream's first ``latency_samples`` (its
        warm-up, before the near-end's first sample) dropped, so output sample ``p`` is the
        near-end's sample ``p`` and is stamped so."""
        out: list[Any] = []
        for b in blocks:
            if self._skip:
                drop = min(self._skip, b.shape[1])
                self._skip -= drop
                b = b[:, drop:]
            if not b.shape[1]:
                continue
            assert self._out_pos is not None
            out.append(AudioFrame(b, self._rate, pts=self._out_pos))
            self._out_pos += b.shape[1]
        return out

    def flush(self) -> list[Any]:
        out = self._end_kernel_stream() if self._kernel is not None else []
        self._next = self._out_pos = None
        return out

    async def cleanup(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None


class _PlacedReference:
    """The reference audio placed on the near-end's clock: samples ``[start, end)`` in a ring
    indexed by absolute position (``pos % capacity``), grown by doubling when it must hold more.
    Appending copies only the samples that come, dropping none (the array this replaced was
    concatenated whole on every reference frame: a second of audio per frame with "auto")."""

    def __init__(self) -> None:
        self.buf = np.zeros((0, 0), np.float32)
        self.channels = 0
        self.start: int | None = None  # None: nothing placed since the stream (re)started
        self.end = 0

    def restart(self, at: int, channels: int) -> None:
        """Empty, from position ``at`` on, ``channels`` wide."""
        if channels != self.channels:
            self.buf = np.zeros((channels, self.buf.shape[1]), np.float32)
            self.channels = channels
        self.start = self.end = at

    def drop(self, upto: int) -> bool:
        """Forget the samples before ``upto``; whether there were any."""
        if self.start is None or upto <= self.start:
            return False
        was, self.start = self.start, min(upto, self.end)
        return self.start > was

    def append(self, x: Block | None, n: int) -> None:
        """``x`` (``(channels, n)``), or ``n`` samples of silence when None, after ``end``."""
        assert self.start is not None, "restart() first"
        if n <= 0:
            return
        cap = self.buf.shape[1]
        if self.end + n - self.start > cap:
            self._grow(self.end + n - self.start)
            cap = self.buf.shape[1]
        at = self.end % cap
        first = min(n, cap - at)
        if x is None:
            self.buf[:, at : at + first] = 0.0
            self.buf[:, : n - first] = 0.0
        else:
            self.buf[:, at : at + first] = x[:, :first]
            self.buf[:, : n - first] = x[:, first:]
        self.end += n

    def read_into(self, out: Block, a: int) -> None:
        """Fill ``out`` (``(channels, n)``) with samples ``[a, a + n)``, all within
        ``[start, end)``."""
        n, cap = out.shape[1], self.buf.shape[1]
        if n <= 0:
            return
        at = a % cap
        first = min(n, cap - at)
        out[:, :first] = self.buf[:, at : at + first]
        out[:, first:] = self.buf[:, : n - first]

    def _grow(self, need: int) -> None:
        assert self.start is not None
        cap = max(4096, self.buf.shape[1])
        while cap < need:
            cap *= 2
        kept = np.zeros((self.channels, self.end - self.start), np.float32)
        if kept.shape[1]:
            self.read_into(kept, self.start)
        self.buf = np.zeros((self.channels, cap), np.float32)
        self.end = self.start
        self.append(kept, kept.shape[1])
