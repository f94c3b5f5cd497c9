"""KalmanAec: the echo canceller of ``EchoCancel(algorithm="kalman")``, block by block (numpy).

Three parts, each a standard one of the field, with settings measured on the benchmark's scenes
(docs/aec3-evaluation.md, "Our own canceller"):

1. A partitioned-block frequency-domain Kalman filter (the linear echo path; overlap-save, FFT of
   two blocks, one partition per block of far-end history, diagonal state covariance ``P``,
   process noise from a first-order Markov model of the path). Its gain falls by itself when the
   error holds more than echo (double talk), so it needs no double-talk detector; its ``P``
   says how far the filter may still be off.
2. A shadow filter: the same structure adapted by normalised LMS with a fixed large step. When
   its error stays clearly under the Kalman filter's (the echo path changed), it is copied over
   and ``P`` is raised to its starting value; when it diverges (double talk) it is reset from
   the Kalman filter.
   A guard on both: when the Kalman filter's error holds clearly more energy than the
   microphone over some 50 blocks (``DIVERGED``: it learnt an echo that is not there, from a
   near-end talker who happened to match the far end) both filters are emptied. (Not per
   block: in double talk the echo and the talker often cancel a little in the microphone,
   and the error is then rightly louder than it.)
3. A residual-echo suppressor (weighted overlap-add, square-root Hann windows of two blocks): the
   residual echo's power is what ``P`` says of the filter's error times the far end's power,
   plus a fixed fraction of the echo estimate's; the gain per bin is one minus that over the
   error's smoothed power. Where the near-end talks the error dwarfs the residual, so double
   talk passes nearly untouched.

Each partition's filter is kept causal by a constraint applied to one partition per block in
turn (as AEC3 and Speex do), which costs two small FFTs a block instead of two per partition.
The output lags the input by one block (``block``) for the overlap-add.

The engine's ``KalmanAec`` (rust_engine/src/dsp/kalman_aec.rs) is the same arithmetic in f64,
operation for operation; ``KalmanAecKernel`` (kalman_kernel.py) frames a stream into blocks.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
C128 = npt.NDArray[np.complex128]


#: The block (hop) per rate: 2 ms up to 16 kHz, 4 ms above (measured: 4 ms converges slower at
#: 16 kHz; 2 ms leaves more echo in double talk at 48 kHz).
def block_samples(rate: int) -> int:
    """Samples per block at ``rate``: 2 ms up to 16 kHz, 4 ms above."""
    return rate // 500 if rate <= 16000 else rate // 250


def parts_for(filter_ms: float, rate: int) -> int:
    """Partitions (blocks of far-end history) that model ``filter_ms`` of echo path."""
    return max(1, math.ceil(filter_ms * rate / 1000 / block_samples(rate)))


#: Kalman: starting state variance per millisecond of block (a partition holds that much of the
#: echo path), and the Markov factor per millisecond (squared, per block: ``a2``).
P0_PER_MS = 0.025
A2_PER_MS = 0.99975
#: Shadow NLMS step, its error's smoothing per block, the ratio under which it is copied over,
#: and the ratio over which it is reset from the Kalman filter.
SHADOW_STEP = 0.8
SHADOW_SMOOTH = 0.95
SHADOW_WINS = 0.5
SHADOW_LOST = 8.0
#: Both filters are emptied when the Kalman filter's error, smoothed over some 50 blocks, holds
#: this many times the microphone's energy: it adds an echo that is not there (learnt from a
#: near-end talker who happened to match the far end, with no echo at all, e.g. headphones).
#: Over fewer blocks a filter still converging trips it where the echo pauses.
DIVERGED = 8.0
DIVERGED_SMOOTH = 0.98
#: Suppressor: weight of the Kalman residual, fraction of the echo estimate's power always
#: counted as residual (-30 dB), smoothing of the powers, the gain's floor (-40 dB).
RESIDUAL_WEIGHT = 0.25
ECHO_LEAK = 1e-3
POWER_SMOOTH = 0.6
GAIN_FLOOR = 0.01


class KalmanAec:
    """One stream's state. ``process(near, far)`` takes ``block`` samples of each (float64) and
    returns ``block`` samples of output, ``block`` samples behind the input."""

    def __init__(self, rate: int, filter_ms: float = 200.0) -> None:
        n = block_samples(rate)
        self.rate, self.block = rate, n
        self.fft = 2 * n
        self.bins = n + 1
        self.parts = parts_for(filter_ms, rate)
        block_ms = 1000.0 * n / rate
        self.a2 = A2_PER_MS**block_ms
        self.p0 = P0_PER_MS * block_ms
        shape = (self.parts, self.bins)
        self.x_hist: C128 = np.zeros(shape, np.complex128)  # ring: far-end spectra
        self.head = 0  # ring slot of the newest spectrum
        self.w: C128 = np.zeros(shape, np.complex128)  # Kalman filter, by lag
        self.ws: C128 = np.zeros(shape, np.complex128)  # shadow filter, by lag
        self.p: F64 = np.full(shape, self.p0)
        self.x_time: F64 = np.zeros(self.fft)
        self.psi: F64 = np.zeros(self.bins)
        self.x_pow: F64 = np.zeros(self.bins)
        self.err_main = 0.0
        self.err_shadow = 0.0
        self.err_slow = 0.0  # the error's and the microphone's energy, DIVERGED_SMOOTH
        self.near_slow = 0.0
        self.resets = 0
        self.turn = 0  # the lag constrained next
        self.copies = 0
        self.window: F64 = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(self.fft) / self.fft))
        self.e_time: F64 = np.zeros(self.fft)
        self.y_time: F64 = np.zeros(self.fft)
        self.overlap: F64 = np.zeros(n)
        self.phi_e: F64 = np.zeros(self.bins)
        self.phi_r: F64 = np.zeros(self.bins)

    def shift(self, m: int) -> None:
        """The far-end fed from now on is ``m`` blocks older (``m`` < 0: newer) than so far: the
        bulk delay before the canceller moved. The filters, ``P`` and the far-end history move
        by ``m`` lags so the echo path learnt carries over; lags with no history start empty
        (``P`` at its start). ``0 < |m| < parts``."""
        parts, k = self.parts, abs(m)
        assert 0 < k < parts
        for a, fill in ((self.w, 0.0), (self.ws, 0.0), (self.p, self.p0)):
            if m > 0:
                a[: parts - k] = a[k:].copy()
                a[parts - k :] = fill
            else:
                a[k:] = a[: parts - k].copy()
                a[:k] = fill
        self.rewind(m)

    def rewind(self, m: int) -> None:
        """The far-end fed from now on continues ``m`` blocks before where it stopped (``m`` < 0:
        after it), the echo path as it was: the far-end history is re-labelled so each lag keeps
        its far-end time; lags with no far-end of the new alignment are emptied, the filters
        stay. (A playout buffer that stretched or skipped the near-end.)"""
        parts, k = self.parts, abs(m)
        if k >= parts:
            self.x_hist[:] = 0.0
            self.x_time = np.zeros(self.fft)
            return
        # Ring: lag l lives in slot (head - l) % parts. Moving the head by m re-labels every
        # slot; the m slots that wrap around hold no far-end of the new alignment.
        if m > 0:
            stale = (self.head - np.arange(k)) % parts  # the newest k: now the oldest lags
            self.head = (self.head - k) % parts
            self.x_hist[stale] = 0.0
            self.x_time = np.fft.irfft(self.x_hist[self.head], n=self.fft)
        elif m < 0:
            self.head = (self.head + k) % parts
            self.x_hist[(self.head - np.arange(k)) % parts] = 0.0  # newer than fed: unknown
            self.x_time = np.zeros(self.fft)

    def resize(self, parts: int) -> None:
        """Model ``parts`` lags from now on: the first ``min(parts, self.parts)`` keep their
        filters, ``P`` and far-end history; lags added start empty (``P`` at its start)."""
        assert parts >= 1
        keep = min(parts, self.parts)
        order = (self.head - np.arange(keep)) % self.parts  # the slots of lags 0..keep
        x_hist: C128 = np.zeros((parts, self.bins), np.complex128)
        # Ring re-laid with the newest spectrum in slot 0: lag l in slot (-l) % parts.
        x_hist[(-np.arange(keep)) % parts] = self.x_hist[order]
        self.x_hist, self.head = x_hist, 0
        for name, fill in (("w", 0.0), ("ws", 0.0), ("p", self.p0)):
            old = getattr(self, name)
            new = np.full((parts, self.bins), fill, old.dtype)
            new[:keep] = old[:keep]
            setattr(self, name, new)
        self.parts = parts
        self.turn %= parts

    def _lagged(self) -> C128:
        """Far-end spectra by lag (0: newest)."""
        order = (self.head - np.arange(self.parts)) % self.parts
        return self.x_hist[order]

    def _error(self, w: C128, x: C128, near: F64) -> tuple[F64, C128, F64]:
        """(error, its spectrum with the block zero-padded in front, echo estimate)."""
        n = self.block
        echo = np.fft.irfft(np.sum(w * x, axis=0), n=self.fft)[n:]
        e = near - echo
        return e, np.fft.rfft(np.concatenate([np.zeros(n), e])), echo

    def _constrain(self) -> None:
        """Zero the second half of one lag's impulse response in both filters, in turn."""
        n, i = self.block, self.turn
        for w in (self.w, self.ws):
            taps = np.fft.irfft(w[i], n=self.fft)
            taps[n:] = 0.0
            w[i] = np.fft.rfft(taps)
        self.turn = (i + 1) % self.parts

    def advance(self, far: F64) -> None:
        """A block of far-end with no near-end (a playout buffer dropped it): into the far-end
        history only; nothing adapts, nothing comes out."""
        n = self.block
        self.x_time = np.concatenate([self.x_time[n:], far])
        self.head = (self.head + 1) % self.parts
        self.x_hist[self.head] = np.fft.rfft(self.x_time)

    def process(self, near: F64, far: F64) -> F64:
        self.advance(far)
        x = self._lagged()
        x2 = x.real**2 + x.imag**2
        e, e_f, echo = self._error(self.w, x, near)
        if self._shadow(x, x2, near, e):  # both filters emptied: the error is the near end
            e, e_f, echo = self._error(self.w, x, near)
        # Kalman update: gain per lag and bin from the state variance and the error's power.
        self.psi = 0.5 * self.psi + 0.5 * (e_f.real**2 + e_f.imag**2)
        gain = self.p / (np.sum(x2 * self.p, axis=0) + self.psi + 1e-12)
        self.w += gain * np.conj(x) * e_f
        self.p = self.a2 * (1.0 - 0.5 * gain * x2) * self.p + (1.0 - self.a2) * (
            self.w.real**2 + self.w.imag**2
        )
        self._constrain()
        return self._suppress(e, echo, np.sum(x2 * self.p, axis=0))

    def _shadow(self, x: C128, x2: F64, near: F64, e: F64) -> bool:
        """Adapt the shadow filter; copy it over the Kalman filter when it does clearly better,
        reset it from the Kalman filter when it diverges, and empty both when the Kalman filter
        adds energy (``DIVERGED``). True when they were emptied."""
        es, es_f, _ = self._error(self.ws, x, near)
        power = np.sum(x2, axis=0)
        self.x_pow = np.maximum(0.9 * self.x_pow + 0.1 * power, power)
        norm = self.x_pow + 0.01 * float(np.mean(self.x_pow)) + 1e-6 * self.fft
        self.ws += SHADOW_STEP * np.conj(x) * es_f / norm
        k = SHADOW_SMOOTH
        self.err_main = k * self.err_main + (1 - k) * float(np.dot(e, e))
        self.err_shadow = k * self.err_shadow + (1 - k) * float(np.dot(es, es))
        if self.err_shadow < SHADOW_WINS * self.err_main and self.err_main > 1e-7:
            self.w[:] = self.ws
            np.maximum(self.p, self.p0, out=self.p)
            self.err_main = self.err_shadow
            self.copies += 1
        elif self.err_shadow > SHADOW_LOST * self.err_main:
            self.ws[:] = self.w
            self.err_shadow = self.err_main
        q, near2 = DIVERGED_SMOOTH, float(np.dot(near, near))
        self.err_slow = q * self.err_slow + (1 - q) * float(np.dot(e, e))
        self.near_slow = q * self.near_slow + (1 - q) * near2
        if self.err_slow > DIVERGED * self.near_slow and self.near_slow > 1e-7:
            self.w[:] = 0.0
            self.ws[:] = 0.0
            self.err_main = self.err_shadow = self.err_slow = self.near_slow
            self.resets += 1
            return True
        return False

    def _suppress(self, e: F64, echo: F64, misfit: F64) -> F64:
        n = self.block
        self.e_time = np.concatenate([self.e_time[n:], e])
        self.y_time = np.concatenate([self.y_time[n:], echo])
        e_w = np.fft.rfft(self.e_time * self.window)
        y_w = np.fft.rfft(self.y_time * self.window)
        residual = ECHO_LEAK * (y_w.real**2 + y_w.imag**2) + RESIDUAL_WEIGHT * misfit
        k = POWER_SMOOTH
        self.phi_e = k * self.phi_e + (1 - k) * (e_w.real**2 + e_w.imag**2)
        self.phi_r = np.maximum(k * self.phi_r + (1 - k) * residual, residual)
        g = np.clip(1.0 - self.phi_r / np.maximum(self.phi_e, 1e-20), GAIN_FLOOR, 1.0)
        out = np.fft.irfft(e_w * g, n=self.fft) * self.window
        y = self.overlap + out[:n]
        self.overlap = out[n:]
        return y
