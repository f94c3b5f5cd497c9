"""The audio a session sends to its peer, as the echo reference of the audio it receives.

A peer without echo cancellation of its own (a Python peer, a SIP gateway, a kiosk) plays what
the server sends, and its microphone picks it up again: the session's inbound audio carries the
echo of its outbound audio. ``EchoCancel(reference="peer")`` in the session's pipeline cancels it;
the session binds ``PeerReference.frames()`` to it before the pipeline starts, feeds ``heard()``
every inbound frame the pipeline gets and ``sent()`` every frame its audio track hands aiortc.

The clock rule. Inbound frames carry the peer's pts (aiortc counts them from the peer's first RTP
packet); outbound frames carry the outbound track's pts (its samples, silence included). Neither
knows the other, so each is tied to this host's monotonic clock, as ``SpeakerSink.reference()``
ties a speaker to a microphone: an inbound frame whose end is at ``p`` seconds reaches the pipeline
no earlier than ``origin_in + p``, an outbound frame starting at ``q`` goes to the encoder no
earlier than ``origin_out + q`` (up to the track's lead early), so each origin is the smallest
``time - position`` over the last 5-10 s. Outbound sample ``q`` is stamped at inbound time
``q + origin_out - origin_in``: the inbound audio that was arriving when it was sent. Its echo
comes back later by the echo delay (network round trip, the peer's jitter buffer, playout and
capture latency, the room), which EchoCancel's window (``delay_ms`` .. ``delay_ms + filter_ms``)
must cover. The offset is fixed once both origins are known and moved (a jump in the reference,
which costs the canceller its convergence) only when the fitted origins move more than
``reanchor_ms`` (100 ms) from it: a clock that jumped. Network jitter and a starved event loop
move the fits by tens of ms for seconds at a time and must not; slow drift between the peer's
clock and this host's is left to ``EchoCancel``'s delay estimator, which moves its window when
the echo leaves it.

A playout buffer between the peer and the pipeline (a telephony call's) moves the inbound clock
against the peer's media on purpose (a ``playout_shift`` event in the inbound stream): the origin
is fitted on the peer's media (``inbound_shifted``), so the stamps stay on it, and
``EchoCancel`` moves its reading of them by the same events.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from fractions import Fraction
from typing import Any

import numpy as np

from ..frames import AudioFrame

#: The value of ``EchoCancel(reference=...)`` a session binds to its outbound audio.
PEER = "peer"


class _Origin:
    """The smallest ``time - position`` (seconds) over the current and the previous window of
    positions; ``value`` is published once ``settle_s`` of positions were seen. A position that
    jumps back (a restarted stream) starts the fit over."""

    def __init__(self, window_s: float = 2.0, settle_s: float = 0.5) -> None:
        self.window_s = window_s
        self.settle_s = settle_s
        self._first: float | None = None
        self._last = 0.0
        self._window_end = 0.0
        self._current: float | None = None
        self._previous: float | None = None
        self.value: float | None = None

    def update(self, position: float, now: float) -> None:
        if self._first is None or position < self._last - 1.0:
            self._first = position
            self._window_end = position + self.window_s
            self._current = self._previous = self.value = None
        self._last = position
        if position >= self._window_end:
            self._previous, self._current = self._current, None
            self._window_end = position + self.window_s
        estimate = now - position
        if self._current is None or estimate < self._current:
            self._current = estimate
        if position - self._first >= self.settle_s:
            prev = self._previous
            self.value = self._current if prev is None else min(prev, self._current)


def _mono(frame: AudioFrame) -> np.ndarray[Any, np.dtype[np.float32]]:
    """A frame's samples as float32 ``(1, n)``: int16 scaled by 1/32768, channels averaged."""
    x = frame.samples if frame.planar else frame.samples.T
    y = x.astype(np.float32)
    if x.dtype == np.int16:
        y *= np.float32(1 / 32768)
    if y.shape[0] > 1:
        y = y.mean(axis=0, dtype=np.float32)[None, :]
    return np.ascontiguousarray(y)


class PeerReference:
    """Outbound audio, stamped on the inbound audio's clock, for ``EchoCancel(reference="peer")``.

    ``max_ms``: audio waiting for the reader (the oldest is dropped past it, ``stats["dropped"]``)
    and, before both clocks are known, for the clocks (``stats["unaligned"]``). ``reanchor_ms``:
    how far the fitted offset may drift before the stamps follow it (``stats["reanchors"]``).
    ``clock``: the host clock both tracks are timed on (seconds).
    """

    def __init__(
        self,
        max_ms: float = 1000.0,
        reanchor_ms: float = 100.0,
        window_s: float = 5.0,
        settle_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.max_s = max_ms / 1000
        self.reanchor_s = reanchor_ms / 1000
        self._in = _Origin(window_s, settle_s)
        self._out = _Origin(window_s, settle_s)
        self._pending: deque[AudioFrame] = deque()  # waiting for the clocks
        self._readers: list[_Reader] = []
        self._closed = False
        self._shift: int | None = None  # samples added to an outbound pts
        self._shift_rate = 0
        self.sent_frames = 0
        self.dropped = 0  # frames the reader did not take in time
        self.unaligned = 0  # frames dropped before both clocks were known
        self.reanchors = 0
        self._moved = 0.0  # seconds the inbound clock gained over the peer's media

    @property
    def stats(self) -> dict[str, Any]:
        """Frames sent, dropped, unaligned; re-anchors; the offset in ms (None before it)."""
        shift = self._shift
        return {
            "sent": self.sent_frames,
            "dropped": self.dropped,
            "unaligned": self.unaligned,
            "reanchors": self.reanchors,
            "moved_ms": round(self._moved * 1000, 2),
            "offset_ms": None if shift is None else round(shift * 1000 / self._shift_rate, 2),
        }

    def inbound_shifted(self, by: float) -> None:
        """The inbound frames heard from now on carry the peer's media ``by`` seconds later
        than those before (a ``playout_shift`` event)."""
        self._moved += by

    def heard(self, frame: AudioFrame) -> None:
        """An inbound audio frame as the pipeline gets it (pts on the peer's clock)."""
        start = frame.time
        if start is not None and frame.num_samples:
            self._in.update(start + frame.duration - self._moved, self.clock())

    def sent(self, frame: AudioFrame) -> None:
        """A frame the outbound track handed aiortc (silence included; pts on its clock)."""
        start = frame.time
        if start is None or self._closed:
            return
        self._out.update(start, self.clock())
        self.sent_frames += 1
        rate = frame.sample_rate
        self._pending.append(AudioFrame(_mono(frame), rate, round(start * rate), Fraction(1, rate)))
        origin_in, origin_out = self._in.value, self._out.value
        if origin_in is None or origin_out is None:
            while len(self._pending) > 1 and self._seconds(self._pending) > self.max_s:
                self._pending.popleft()
                self.unaligned += 1
            return
        ideal = round((origin_out - origin_in) * rate)
        if self._shift is None or rate != self._shift_rate:
            self._shift, self._shift_rate = ideal, rate
        elif abs(ideal - self._shift) > self.reanchor_s * rate:
            self._shift = ideal
            self.reanchors += 1
        while self._pending:
            f = self._pending.popleft()
            assert f.pts is not None
            f.pts += self._shift
            for reader in self._readers:
                self.dropped += reader.put(f, self.max_s)

    @staticmethod
    def _seconds(frames: deque[AudioFrame]) -> float:
        return sum(f.duration for f in frames)

    def close(self) -> None:
        """No more audio: each reader ends once it has taken what is there."""
        self._closed = True
        for reader in self._readers:
            reader.wake.set()

    def frames(self) -> AsyncIterator[AudioFrame]:
        """The stamped reference from now on, float32 mono at the outbound rate, until
        ``close()``; each call is a reader of its own."""
        reader = _Reader()
        self._readers.append(reader)
        return self._read(reader)

    async def _read(self, reader: _Reader) -> AsyncIterator[AudioFrame]:
        try:
            while True:
                while reader.frames:
                    frame = reader.frames.popleft()
                    reader.seconds -= frame.duration
                    yield frame
                if self._closed:
                    return
                reader.wake.clear()
                await reader.wake.wait()
        finally:
            self._readers.remove(reader)


class _Reader:
    """One reader's frames, bounded: ``put`` drops the oldest past ``max_s``."""

    def __init__(self) -> None:
        self.frames: deque[AudioFrame] = deque()
        self.seconds = 0.0
        self.wake = asyncio.Event()

    def put(self, frame: AudioFrame, max_s: float) -> int:
        """Queue ``frame``; returns how many frames were dropped to make room."""
        self.frames.append(frame)
        self.seconds += frame.duration
        dropped = 0
        while len(self.frames) > 1 and self.seconds > max_s:
            self.seconds -= self.frames.popleft().duration
            dropped += 1
        self.wake.set()
        return dropped


def peer_reference_nodes(nodes: list[Any]) -> list[Any]:
    """The nodes of a pipeline that want the session's outbound audio as their reference."""
    return [
        n for n in nodes if getattr(n, "reference", None) == PEER and hasattr(n, "use_reference")
    ]


__all__ = ["PEER", "PeerReference", "peer_reference_nodes"]
