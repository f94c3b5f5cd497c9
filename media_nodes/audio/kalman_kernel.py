"""KalmanAecKernel: the Python twin of the engine's ``KalmanAecKernel`` (``EchoCancel(algorithm=
"kalman")``): ``KalmanAec`` (kalman_aec.py) fed a stream in its blocks, output in frames.

Both twins compute in float64 the same arithmetic; they differ by the FFT's rounding only
(numpy's pocketfft, the engine's ``realfft``), which the adaptive filters carry on: the
tolerance between them is measured in tests/audio/test_kalman_aec.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stream.kernel import Block

from .echo_pair import PairKernel, far_mono
from .echo_settings import KALMAN_SETTINGS
from .kalman_aec import KalmanAec, block_samples, parts_for

#: The sample rates the canceller runs at.
RATES = (8000, 16000, 32000, 48000)
SETTINGS = KALMAN_SETTINGS


class _Stream:
    """One stream: the canceller, the block being filled, the output not yet emitted."""

    def __init__(self, rate: int, far_channels: int, frame: int, filter_ms: float) -> None:
        self.aec = KalmanAec(rate, filter_ms)
        self.rate, self.far_channels, self.frame = rate, far_channels, frame
        n = self.aec.block
        self.near = np.zeros(n)
        self.far = np.zeros(n)
        self.fill = 0
        self.done: list[Block] = []
        self.done_samples = 0

    def run(self) -> None:
        out = self.aec.process(self.near.copy(), self.far.copy())
        self.done.append(out.astype(np.float32))
        self.done_samples += len(out)

    def feed(self, near: Block, far: Block) -> None:
        n, pos, size = len(near), 0, self.aec.block
        while pos < n:
            take = min(size - self.fill, n - pos)
            self.near[self.fill : self.fill + take] = near[pos : pos + take]
            self.far[self.fill : self.fill + take] = far[pos : pos + take]
            self.fill += take
            pos += take
            if self.fill == size:
                self.run()
                self.fill = 0

    def take(self, whole_frames: bool) -> list[Block]:
        """The output in frames of ``frame`` samples (and the rest, unless ``whole_frames``)."""
        if not self.done:
            return []
        joined = np.concatenate(self.done)
        cut = len(joined) - len(joined) % self.frame if whole_frames else len(joined)
        self.done = [joined[cut:]] if cut < len(joined) else []
        self.done_samples = len(joined) - cut
        return [joined[:cut][None, :]] if cut else []


class KalmanAecKernel(PairKernel):
    """Python twin of ``stream._engine.KalmanAecKernel``.

    ``process(near, far, sample_rate)``: ``near`` a ``(1, n)`` float32 block, ``far`` ``(C, n)``
    (averaged to mono), at 8, 16, 32 or 48 kHz; returns zero or one ``(1, k * frame)`` block of
    echo-cancelled near-end, ``latency_samples`` (one canceller block) behind the input.
    ``filter_ms``: the echo path modelled. Raises ``FormatError`` for bad blocks, ``ConfigError``
    for bad settings.
    """

    def __init__(
        self, filter_ms: float = 200.0, frame_ms: float = 20.0, *, stage: str = "echo_cancel"
    ) -> None:
        super().__init__(stage=stage)
        values = SETTINGS.validate(
            stage, {"filter_ms": filter_ms, "frame_ms": frame_ms}, kernel=True
        )
        self.filter_ms: float = values["filter_ms"]
        self.frame_ms: float = values["frame_ms"]
        self._st: _Stream | None = None

    @property
    def frame_samples(self) -> int | None:
        return None if self._st is None else self._st.frame

    @property
    def pending_samples(self) -> int:
        return 0 if self._st is None else self._st.fill + self._st.done_samples

    @property
    def latency_samples(self) -> int:
        return 0 if self._st is None else self._st.aec.block

    def rate_problem(self, rate: int) -> str | None:
        if rate in RATES:
            return None
        return (
            f"the Kalman canceller runs at 8000, 16000, 32000 or 48000 Hz, got {rate} Hz; "
            "put Resample before it"
        )

    def process(self, near: Any, far: Any, sample_rate: int) -> list[Block]:
        st = self._st
        started = None if st is None else (st.rate, st.far_channels)
        x, f, rate = self.check_pair(near, far, sample_rate, started)
        if st is None:
            frame = max(1, round(self.frame_ms * rate / 1000))
            st = self._st = _Stream(rate, f.shape[0], frame, self.filter_ms)
        st.feed(x[0].astype(np.float64), far_mono(f).astype(np.float64))
        return st.take(whole_frames=True)

    def shift_far(self, samples: int) -> int:
        """Carry the adapted filters over a move of the bulk delay: the far-end fed from now on
        is ``samples`` later (negative: earlier) behind the near-end than so far. Rounds to
        whole canceller blocks and returns the samples it shifted by; 0 when it cannot (no
        stream yet, less than half a block, or a move as long as the filter): flush then."""
        st = self._st
        if st is None:
            return 0
        m = round(int(samples) / st.aec.block)
        if m == 0 or abs(m) >= st.aec.parts:
            return 0
        st.aec.shift(m)
        return m * st.aec.block

    def advance_far(self, far: Any) -> int:
        """Far-end audio ``(channels, n)`` played while the near-end was dropped (a playout
        buffer's skip): into the far-end history in whole blocks, no output, no adaptation.
        Returns the samples taken: 0 with no stream or between blocks (then ``rewind_far``)."""
        st = self._st
        if st is None or st.fill:
            return 0
        f = far_mono(np.asarray(far, np.float32)).astype(np.float64)
        n = st.aec.block
        whole = int(f.shape[0]) // n
        for i in range(whole):
            st.aec.advance(f[i * n : (i + 1) * n])
        return whole * n

    def rewind_far(self, samples: int) -> int:
        """The far-end fed from now on continues ``samples`` before where it stopped (negative:
        after), with the echo path as it was (the near-end's clock moved against its media, a
        playout buffer's stretch or skip): the far-end history is re-labelled, the filters
        stay. Rounds to whole canceller blocks; returns the samples it moved by (0: no
        stream yet, or less than half a block)."""
        st = self._st
        if st is None:
            return 0
        m = round(int(samples) / st.aec.block)
        if m:
            st.aec.rewind(m)
        return m * st.aec.block

    def set_filter_ms(self, filter_ms: float) -> None:
        """Model ``filter_ms`` of echo path from now on (and in later streams): a running
        stream keeps what it learnt of the lags both lengths cover, lags added start empty.
        Raises ``ConfigError`` for a length out of range."""
        values = SETTINGS.validate(
            self.stage, {"filter_ms": filter_ms, "frame_ms": self.frame_ms}, kernel=True
        )
        self.filter_ms = values["filter_ms"]
        st = self._st
        if st is not None:
            st.aec.resize(parts_for(self.filter_ms, st.rate))

    def flush(self) -> list[Block]:
        st, out = self._st, []
        if st is not None:
            if st.fill:
                held = st.fill
                st.near[held:] = 0.0
                st.far[held:] = 0.0
                st.run()
                cut = st.aec.block - held
                st.done[-1] = st.done[-1][: len(st.done[-1]) - cut]
                st.done_samples -= cut
            out = st.take(whole_frames=False)
        self.reset()
        return out

    def reset(self) -> None:
        self._st = None


__all__ = ["RATES", "SETTINGS", "KalmanAecKernel", "block_samples"]
