"""Timing on a TCP media path: the inbound playout buffer and the outbound pacer of one call.

A provider's WebSocket delivers audio in bursts (TCP retransmits and coalesces), sometimes out of
order (Telnyx), and chunks can be missing (the provider's own RTP leg lost them). The pipeline
should see what a sound card would give it: one frame every ``frame_ms``, continuous.

``PlayoutBuffer`` places each chunk at its media position (the protocol's ``timestamp``, else
right after the previous chunk) and hands out one frame per tick of the call's clock:

- **Bursts** are smoothed by the buffer's level: a frame that is due before its audio came
  (underrun) is concealed and the play position held, so the delay grows by one frame; once the
  lowest level over the last ``window_s`` stays above ``margin_ms`` plus a frame, one frame is
  skipped (the delay shrinks). The delay so settles at the jitter the link has.
- **Loss**: a frame whose audio is missing while later audio is there is concealed and passed
  (``lost``); audio that arrives after its time was played is dropped (``late``).
- **Concealment** (``Concealer``): the last pitch period repeated (period found by
  autocorrelation), at full level for 10 ms, then fading by 20 % each 10 ms (as G.711 Appendix I
  does) into comfort noise at the background's level; the first real audio after it is
  cross-faded in. Never a gap of zeros.
- **Backlog cap**: more than ``max_delay_ms`` buffered ahead (a stalled reader, a flood) drops the
  oldest audio so ``margin_ms`` is left (``overflow_ms``).

Stretching, skipping and the cap move the frames' timeline against the caller's media: ``shift``
counts the samples it gained (a call tells its echo reference, whose stamps follow it, so the
echo of what the caller plays stays where the canceller learnt it).

``OutboundPacer`` holds what goes back to the caller: audio and marks in order, sent one
``frame_ms`` chunk per tick (up to ``lead`` chunks ahead of real time), a mark once the audio
before it has been sent, ``clear()`` dropping everything queued (so it is honoured within the
chunk in flight). Its backlog cap: past ``max_backlog_ms`` queued, the oldest audio is dropped
(``dropped_ms``): a live pipeline never gets there; a source faster than real time is cut to the
last ``max_backlog_ms``.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from typing import Any

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
NOISE_MAX = 10 ** (-40 / 20)  # the loudest comfort noise


class Concealer:
    """Packet-loss concealment and comfort noise for one mono stream at ``sample_rate``."""

    def __init__(self, sample_rate: int, seed: int = 0) -> None:
        self.rate = sample_rate
        self.min_period = max(2, sample_rate // 400)  # 2.5 ms: 400 Hz
        self.max_period = sample_rate // 66  # 15 ms: 66 Hz
        self.keep = 3 * self.max_period
        self.history = np.zeros(self.keep, np.float32)
        self.run = 0  # samples concealed in a row
        self._template = np.zeros(self.min_period, np.float32)
        self._phase = 0
        self._noise_rms = 10 ** (-70 / 20)  # the background's level, from real audio
        self._rng = np.random.default_rng(seed)
        self._fade = max(1, round(sample_rate * 0.0025))  # cross-fade into real audio: 2.5 ms

    def _period(self) -> int:
        h = self.history.astype(np.float64)
        best, best_score = self.max_period, -math.inf
        tail = h[-self.max_period :]
        energy = float(np.dot(tail, tail))
        if energy <= 1e-12:
            return self.max_period
        for p in range(self.min_period, self.max_period + 1):
            seg = h[-self.max_period - p : -p]
            score = float(np.dot(tail, seg)) / math.sqrt(energy * float(np.dot(seg, seg)) + 1e-12)
            if score > best_score:
                best, best_score = p, score
        return best

    def _gains(self, first: int, n: int) -> F32:
        """Levels of concealed samples ``first .. first + n`` of a run: 1 for 10 ms, then down
        by 20 % of the full level each 10 ms (silent, so comfort noise alone, from 60 ms)."""
        ten = self.rate / 100
        k = np.arange(first, first + n, dtype=np.float64)
        return np.clip(1.0 - 0.2 * (k - ten) / ten, 0.0, 1.0).astype(np.float32)

    def conceal(self, n: int) -> F32:
        """``n`` samples continuing the signal where audio is missing."""
        if self.run == 0:
            period = self._period()
            self._template = self.history[-period:].copy()
            self._phase = 0
        t = self._template
        idx = (self._phase + np.arange(n)) % t.shape[0]
        self._phase = int((self._phase + n) % t.shape[0])
        gains = self._gains(self.run, n)
        noise = self._rng.standard_normal(n).astype(np.float32) * np.float32(self._noise_rms)
        out = (t[idx] * gains + noise * (1 - gains)).astype(np.float32)
        self.run += n
        self._remember(out)
        return out

    def real(self, x: F32) -> F32:
        """Real audio: cross-faded in after concealment, and remembered."""
        out = x
        if self.run:
            m = min(self._fade, x.shape[0])
            tail = self.conceal(m)
            self.run = 0
            w = np.linspace(0.0, 1.0, m, endpoint=False, dtype=np.float32)
            out = x.copy()
            out[:m] = tail * (1 - w) + x[:m] * w
        rms = math.sqrt(float(np.dot(x, x)) / max(1, x.shape[0]))
        # the background: the quietest recent level, rising by about 1 dB a second when the
        # line gets louder, and never above -40 dBFS (a pause in loud audio is not its noise)
        rise = 10 ** (x.shape[0] / self.rate / 20)
        self._noise_rms = min(max(rms, 1e-5), self._noise_rms * rise, NOISE_MAX)
        self._remember(out)
        return out

    def _remember(self, x: F32) -> None:
        if x.shape[0] >= self.keep:
            self.history = x[-self.keep :].copy()
        else:
            self.history = np.concatenate([self.history[x.shape[0] :], x])


class PlayoutBuffer:
    """The inbound jitter buffer of one call: chunks in by media position, frames out by tick.

    ``sample_rate``/``frame_ms``: the frames handed out; ``margin_ms``: the lowest level kept
    before frames are skipped; ``window_s``: how long the level must stay above it;
    ``max_delay_ms``: the backlog cap. ``stats`` holds the counters.
    """

    def __init__(
        self,
        sample_rate: int = 8000,
        frame_ms: float = 20.0,
        *,
        margin_ms: float = 20.0,
        window_s: float = 1.0,
        max_delay_ms: float = 1000.0,
        seed: int = 0,
    ) -> None:
        self.rate = sample_rate
        self.frame = round(sample_rate * frame_ms / 1000)
        self.margin = round(sample_rate * margin_ms / 1000)
        self.window = max(1, round(window_s * 1000 / frame_ms))
        self.max_delay = round(sample_rate * max_delay_ms / 1000)
        self.concealer = Concealer(sample_rate, seed)
        self._starts: list[int] = []  # sorted chunk starts
        self._chunks: dict[int, tuple[F32, float]] = {}  # start -> (samples, arrival time)
        self._next_in = 0  # where a chunk without a timestamp goes
        self._origin: int | None = None  # media position of the first chunk
        self.play_pos: int | None = None  # next sample to hand out (None: not started)
        self._levels: deque[int] = deque(maxlen=self.window)
        self._delays: deque[float] = deque(maxlen=2000)
        self.frames = 0
        self.concealed = 0  # frames with concealed samples
        self.stretched = 0  # underruns: concealed with the position held
        self.lost = 0  # frames concealed over missing audio
        self.late = 0  # chunks that came after their time
        self.skipped = 0  # frames dropped to shrink the delay
        self.overflow_ms = 0.0
        #: samples the handed-out frames gained over the media (+ stretched, - skipped or capped)
        self.shift = 0
        self.chunks_in = 0
        self.duplicates = 0

    # -- in
    def put(self, samples: F32, timestamp_ms: int | None, now: float) -> None:
        """A chunk (mono float32) at ``timestamp_ms`` (None: right after the previous one)."""
        n = samples.shape[0]
        if n == 0:
            return
        self.chunks_in += 1
        if timestamp_ms is None:
            start = self._next_in
        else:
            start = round(timestamp_ms * self.rate / 1000)
            if self._origin is None:
                self._origin = start
            if self.play_pos is not None and start + n <= self.play_pos:
                self.late += 1
                return
        if self._origin is None:
            self._origin = start
        if self.play_pos is None:
            self.play_pos = start
        self._next_in = max(self._next_in, start + n)
        if start in self._chunks:
            self.duplicates += 1
            return
        bisect.insort(self._starts, start)
        self._chunks[start] = (samples, now)
        self._cap()

    def _cap(self) -> None:
        assert self.play_pos is not None
        end = self._starts[-1] + self._chunks[self._starts[-1]][0].shape[0]
        if end - self.play_pos <= self.max_delay:
            return
        new_pos = end - self.margin - self.frame
        self.overflow_ms += (new_pos - self.play_pos) * 1000 / self.rate
        self.shift -= new_pos - self.play_pos
        self.play_pos = new_pos
        self._drop_before(new_pos)

    def _drop_before(self, pos: int) -> None:
        while self._starts:
            s = self._starts[0]
            if s + self._chunks[s][0].shape[0] > pos:
                break
            self._starts.pop(0)
            del self._chunks[s]

    @property
    def started(self) -> bool:
        return self.play_pos is not None

    @property
    def level(self) -> int:
        """Samples buffered ahead of the play position (0 before the start)."""
        if self.play_pos is None or not self._starts:
            return 0
        last = self._starts[-1]
        return max(0, last + int(self._chunks[last][0].shape[0]) - self.play_pos)

    # -- out
    def pull(self, now: float) -> F32:
        """The next frame: real audio where it came, concealed where not. Call once per tick
        of the call's clock (after the first ``put``)."""
        assert self.play_pos is not None, "pull() before the first chunk"
        f, pos = self.frame, self.play_pos
        level = self.level
        self._levels.append(level)
        if level == 0:  # underrun: nothing at or after the position; hold it
            self.stretched += 1
            self.concealed += 1
            self.frames += 1
            self.shift += f
            return self.concealer.conceal(f)
        if (
            len(self._levels) == self.window
            and min(self._levels) > self.margin + f
            and self._has(pos, pos + f)
        ):
            self.skipped += 1  # the delay has room to shrink: drop a frame
            self.shift -= f
            self._levels.clear()
            pos += f
            self._drop_before(pos)
        out = np.empty(f, np.float32)
        covered = np.zeros(f, bool)
        i = bisect.bisect_right(self._starts, pos) - 1
        i = max(i, 0)
        while i < len(self._starts) and self._starts[i] < pos + f:
            s = self._starts[i]
            x, arrived = self._chunks[s]
            a, b = max(s, pos), min(s + x.shape[0], pos + f)
            if a < b:
                out[a - pos : b - pos] = x[a - s : b - s]
                covered[a - pos : b - pos] = True
                self._delays.append(now - arrived)
            i += 1
        self.play_pos = pos + f
        self._drop_before(self.play_pos)
        self.frames += 1
        if covered.all():
            return self.concealer.real(out)
        self.concealed += 1
        self.lost += 1
        result = np.empty(f, np.float32)
        k = 0
        while k < f:  # runs of real and missing samples, in order
            j = k
            while j < f and covered[j] == covered[k]:
                j += 1
            if covered[k]:
                result[k:j] = self.concealer.real(out[k:j])
            else:
                result[k:j] = self.concealer.conceal(j - k)
            k = j
        return result

    def _has(self, a: int, b: int) -> bool:
        i = bisect.bisect_right(self._starts, a) - 1
        for s in self._starts[max(i, 0) :]:
            if s >= b:
                break
            if s + self._chunks[s][0].shape[0] > a:
                return True
        return False

    @property
    def stats(self) -> dict[str, Any]:
        delays = sorted(self._delays)

        def pct(q: float) -> float | None:
            if not delays:
                return None
            return round(1000 * delays[min(len(delays) - 1, int(q * len(delays)))], 1)

        return {
            "frames": self.frames,
            "chunks_in": self.chunks_in,
            "concealed": self.concealed,
            "stretched": self.stretched,
            "lost": self.lost,
            "late": self.late,
            "skipped": self.skipped,
            "duplicates": self.duplicates,
            "overflow_ms": round(self.overflow_ms, 1),
            "shift_ms": round(self.shift * 1000 / self.rate, 1),
            "level_ms": round(self.level * 1000 / self.rate, 1),
            "delay_ms_p50": pct(0.5),
            "delay_ms_p99": pct(0.99),
        }


class OutboundPacer:
    """Audio and marks toward the caller, in order, one ``frame_ms`` chunk per tick.

    ``put(samples)`` queues mono float32 audio; ``mark(name)`` a mark after it; ``take()`` at
    each tick gives the next chunk (None when nothing is queued) and the marks whose audio is
    now all sent; ``clear()`` drops what is queued and returns the marks it held.
    """

    def __init__(
        self, sample_rate: int = 8000, frame_ms: float = 20.0, *, max_backlog_ms: float = 10000.0
    ) -> None:
        self.rate = sample_rate
        self.frame = round(sample_rate * frame_ms / 1000)
        self.max_backlog = round(sample_rate * max_backlog_ms / 1000)
        self._items: deque[F32 | str] = deque()  # audio blocks and mark names, in order
        self._queued = 0  # samples
        self.sent_chunks = 0
        self.sent_samples = 0
        self.marks_sent = 0
        self.clears = 0
        self.cleared_ms = 0.0
        self.dropped_ms = 0.0
        self.underruns = 0  # counted by the caller's clock: a chunk was due and none was queued

    @property
    def queued_ms(self) -> float:
        return self._queued * 1000 / self.rate

    @property
    def empty(self) -> bool:
        return not self._items

    def put(self, samples: F32) -> None:
        if samples.shape[0] == 0:
            return
        self._items.append(samples)
        self._queued += samples.shape[0]
        while self._queued > self.max_backlog:  # the cap: drop the oldest audio
            head = next((i for i, x in enumerate(self._items) if not isinstance(x, str)), None)
            if head is None:
                break
            block = self._items[head]
            assert not isinstance(block, str)
            cut = min(block.shape[0], self._queued - self.max_backlog)
            self.dropped_ms += cut * 1000 / self.rate
            self._queued -= cut
            if cut == block.shape[0]:
                del self._items[head]
            else:
                self._items[head] = block[cut:]

    def mark(self, name: str) -> None:
        self._items.append(name)

    def take(self) -> tuple[F32 | None, list[str]]:
        """The next chunk (at most one frame; less only before a mark or at the end of what is
        queued) and the marks that follow the audio sent so far."""
        marks: list[str] = []
        while self._items and isinstance(self._items[0], str):
            marks.append(self._items.popleft())  # type: ignore[arg-type]
        parts: list[F32] = []
        need = self.frame
        while need and self._items and not isinstance(self._items[0], str):
            block = self._items.popleft()
            assert not isinstance(block, str)
            if block.shape[0] > need:
                self._items.appendleft(block[need:])
                block = block[:need]
            parts.append(block)
            need -= block.shape[0]
        while self._items and isinstance(self._items[0], str):
            marks.append(self._items.popleft())  # type: ignore[arg-type]
        self.marks_sent += len(marks)
        if not parts:
            return None, marks
        chunk = parts[0] if len(parts) == 1 else np.concatenate(parts)
        self._queued -= chunk.shape[0]
        self.sent_chunks += 1
        self.sent_samples += chunk.shape[0]
        return chunk, marks

    def clear(self) -> list[str]:
        """Drop the queued audio; the marks it held, in order (they are answered at once)."""
        marks = [x for x in self._items if isinstance(x, str)]
        self.cleared_ms += self._queued * 1000 / self.rate
        self._items.clear()
        self._queued = 0
        self.clears += 1
        return marks

    @property
    def stats(self) -> dict[str, Any]:
        return {
            "sent_chunks": self.sent_chunks,
            "sent_ms": round(self.sent_samples * 1000 / self.rate, 1),
            "queued_ms": round(self.queued_ms, 1),
            "marks_sent": self.marks_sent,
            "clears": self.clears,
            "cleared_ms": round(self.cleared_ms, 1),
            "dropped_ms": round(self.dropped_ms, 1),
            "underruns": self.underruns,
        }


__all__ = ["Concealer", "OutboundPacer", "PlayoutBuffer"]
