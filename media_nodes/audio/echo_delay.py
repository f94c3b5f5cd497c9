"""DelayEstimator: the bulk delay of an echo path, found from the signals (GCC-PHAT).

``EchoCancel(delay_ms="auto")`` (echo_cancel.py) runs one and moves its filter's window to where
the estimates agree; the constants below are the estimator's tuning and the node's schedule for it.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from stream.engine import engine_class
from stream.kernel import Block

AUTO_MAX_DELAY_MS = 1000.0  # the longest bulk delay "auto" looks for
EST_RATE = 8000  # about the rate the estimator works at (an integer fraction of the stream's)
EST_WINDOW_S = 4.0  # near-end audio each estimate looks at
EST_HOP_S = 0.5  # an estimate every half second of near-end
EST_SEARCH_HOP_S = 0.25  # ... every quarter second while searching: until the first delay is
EST_SEARCH_S = 4.0  # found, in the first 4 s of near-end (an echo-free stream then pays no more)
EST_MIN_S = 0.5  # the least near-end an estimate looks at
EST_LAG_S = 0.1  # ... of audio this much older than the newest
EST_RATIO = 10.0  # a peak this far over the mean is an echo (uncorrelated: about 5)
EST_AGREE_MS = 2.0  # two estimates in a row within this are believed
SILENT = 1e-3  # -60 dBFS: no estimate when either side is quieter
EST_TAPER_S = 0.05  # both ends of both signals faded over this (see DelayEstimator)


class Estimator(Protocol):
    """What the node uses of a delay estimator: ``DelayEstimator`` or the engine's twin."""

    @property
    def lag(self) -> int: ...
    @property
    def size(self) -> int: ...
    @property
    def max_delay(self) -> int: ...
    def add_near(self, pos: int, x: Block) -> None: ...
    def add_far(self, pos: int, x: Block) -> None: ...
    def estimate(self, at: int) -> tuple[float, float] | None: ...


def delay_estimator(rate: int, backend: str, stage: str) -> Estimator:
    """The estimator for a stage running on ``backend``: the engine's ``DelayEstimator`` on
    "rust" (the same method in Rust: the same delays, ratios within 1e-3; about 2x faster),
    else ``DelayEstimator``."""
    native = engine_class("DelayEstimator", backend)
    if native is not None:
        estimator: Estimator = native(rate, stage=stage)
        return estimator
    return DelayEstimator(rate)


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
    either side is silent (under -60 dBFS) or less than ``EST_MIN_S`` of near-end was seen.
    Both signals are faded in and out over ``EST_TAPER_S``: cut square, both end at the same
    instant, and the whitened cut correlates with itself at delay 0 (peaks of ratio 35 to 45 at
    0 ms on speech whose echo is 150 or 450 ms late).
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
        k = max(1, round(EST_TAPER_S * rate / self.step))
        self._fade = (0.5 - 0.5 * np.cos(np.pi * (np.arange(k) + 0.5) / k)).astype(np.float32)

    def add_near(self, pos: int, x: Block) -> None:
        self._near.write(pos, x[0] if x.shape[0] == 1 else x.mean(axis=0))

    def add_far(self, pos: int, x: Block) -> None:
        self._far.write(pos, x[0] if x.shape[0] == 1 else x.mean(axis=0))

    def estimate(self, at: int) -> tuple[float, float] | None:
        end = at - self.lag
        start = max(end - self.window, self._near.first if self._near.first is not None else end)
        q = self.step
        start = end - (end - start) // q * q
        if end - start < round(EST_MIN_S * self.rate):
            return None
        near = self._near.read(start, end)
        far = self._far.read(start - self.max_delay, end)
        if _rms(near) < SILENT or _rms(far[self.max_delay :]) < SILENT:
            return None
        nd = self._faded(_decimate(near, q))
        fd = self._faded(_decimate(far, q))
        size = 1 << int(np.ceil(np.log2(nd.shape[0] + fd.shape[0])))
        cross = np.fft.rfft(nd, size)
        cross *= np.conj(np.fft.rfft(fd, size))
        cross /= np.abs(cross) + 1e-12
        c = np.fft.irfft(cross, size)
        # near[i] matches far[i + offset - lag] at lag (decimated samples), offset = max_delay / q:
        # lags 0..offset are c[size - offset:] then c[0]
        offset = self.max_delay // q
        values = np.concatenate([c[size - offset :], c[:1]])
        best = int(np.argmax(values))
        ratio = float(values[best] / max(float(np.mean(np.abs(values))), 1e-30))
        return best * q * 1000 / self.rate, ratio

    def _faded(
        self, x: np.ndarray[Any, np.dtype[np.float32]]
    ) -> np.ndarray[Any, np.dtype[np.float32]]:
        """``x`` (a fresh array) faded in and out over ``EST_TAPER_S``, in place."""
        k = min(self._fade.shape[0], x.shape[0] // 2)
        x[:k] *= self._fade[:k]
        x[x.shape[0] - k :] *= self._fade[:k][::-1]
        return x


def _decimate(
    x: np.ndarray[Any, np.dtype[np.float32]], q: int
) -> np.ndarray[Any, np.dtype[np.float32]]:
    """The mean of each ``q`` samples (a tail short of ``q`` dropped), bit for bit
    ``x.reshape(-1, q).mean(axis=1)``: for q < 8 numpy sums the q values one after another, which
    strided slices do in the same order several times faster than a reduction over a short inner
    axis; from 8 (streams over 64 kHz) numpy sums pairwise, so its own mean is kept."""
    n = x.shape[0] // q
    if q == 1:
        return x[:n].copy()
    if q >= 8:
        mean: np.ndarray[Any, np.dtype[np.float32]] = x[: n * q].reshape(-1, q).mean(axis=1)
        return mean
    out = x[0 : n * q : q] + x[1 : n * q : q]
    for k in range(2, q):
        out += x[k : n * q : q]
    out /= np.float32(q)
    return out


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
        if hi > lo:  # at most size samples: one slice of the ring, or its end then its start
            at = lo % self.size
            first = min(hi - lo, self.size - at)
            out[lo - a : lo - a + first] = self.buf[at : at + first]
            out[lo - a + first : hi - a] = self.buf[: hi - lo - first]
        return out
