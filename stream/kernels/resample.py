"""ResampleKernel, the Python twin of Resample, and its SETTINGS.

Streaming rational polyphase resampling with a Kaiser-windowed sinc filter.

Every block yields its share of output within a sample, so the stage adds only the filter's
delay (``latency_samples``, under 5 ms for every rate pair of 8 to 48 kHz). Both backends use the
same filter, designed by ``design_filter`` as docs/kernels.md specifies. Why not soxr or rubato:
soxr's streaming mode returns nothing for most 20 ms calls and then a burst (21 to 42 ms more
latency), and rubato's resamplers take fixed-size chunks, so arbitrary frame sizes would be
buffered into bursts too; and neither filter can be matched by a numpy twin to parity tolerance.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import as_strided, sliding_window_view

from ..errors import FormatError
from ..kernel import Block, PyKernel, StreamFormat
from ..stage_settings import Setting, Settings, int_in

ATTENUATION_DB = 90.0
TRANSITION = 0.18  # transition band width as a fraction of the lower rate's Nyquist frequency
MAX_PHASES = 1024


SETTINGS = Settings(
    "Resample",
    Setting(
        "sample_rate",
        "int",
        check=int_in("sample_rate", 1000, 384000, "an int in 1000..=384000 Hz"),
        doc="output sample rate, Hz",
    ),
)


def design_filter(in_rate: int, out_rate: int) -> tuple[int, int, npt.NDArray[np.float32]]:
    """``(L, M, bank)``: bank[p] holds phase p's K taps, reversed, as float32.

    Raises ValueError when the reduced ratio needs more than MAX_PHASES phases.
    """
    g = math.gcd(in_rate, out_rate)
    up, down = out_rate // g, in_rate // g
    if up > MAX_PHASES:
        raise ValueError(f"unsupported rate pair {in_rate} -> {out_rate} Hz ({up} phases)")
    nyq = min(in_rate, out_rate) / 2.0
    df = TRANSITION * nyq
    fc = nyq - df / 2.0
    rate_up = float(in_rate * up)
    n_est = (ATTENUATION_DB - 7.95) / (2.285 * 2.0 * math.pi * df / rate_up)
    taps = math.ceil(n_est / up)
    n = taps * up
    beta = 0.1102 * (ATTENUATION_DB - 8.7)
    j = np.arange(n, dtype=np.float64)
    h = np.sinc(2.0 * fc * (j - (n - 1) / 2.0) / rate_up) * np.kaiser(n, beta)
    h *= up / h.sum()
    # h[p + k*L] multiplies x[i - k]; store reversed so each output is one contiguous dot product.
    bank = h.reshape(taps, up).T[:, ::-1]
    return up, down, np.ascontiguousarray(bank, dtype=np.float32)


class ResampleKernel(PyKernel):
    """Python twin of ``stream._engine.ResampleKernel`` (docs/kernels.md)."""

    def __init__(self, sample_rate: int, *, stage: str = "resample") -> None:
        super().__init__(stage=stage)
        values = SETTINGS.validate(stage, {"sample_rate": sample_rate}, kernel=True)
        self.sample_rate: int = values["sample_rate"]
        self._format = StreamFormat()
        self._bank: npt.NDArray[np.float32] | None = None
        self._up = self._down = 1
        self._history: Block | None = None
        self._taken = self._made = 0

    @property
    def input_rate(self) -> int | None:
        return self._format.rate or None

    @property
    def latency_seconds(self) -> float:
        if self._bank is None:
            return 0.0
        taps = int(self._bank.shape[1])
        return (taps * self._up - 1) / 2.0 / self._up / self._format.rate

    @property
    def latency_samples(self) -> int:
        return round(self.latency_seconds * self.sample_rate)

    def output_rate(self, input_rate: int) -> int:
        self.rate(input_rate)  # checked as every kernel checks it
        return self.sample_rate

    def _start(self, block: Block, rate: int) -> None:
        if rate == self.sample_rate:
            return
        try:
            self._up, self._down, self._bank = design_filter(rate, self.sample_rate)
        except ValueError as exc:
            self._format.clear()
            raise self.error(FormatError, str(exc)) from None
        # K - 1 samples of history, plus the lag a rounded output count can leave an output behind
        # the newest input (up to M / 2L input samples when downsampling).
        keep = self._bank.shape[1] - 1 + -(-self._down // self._up) + 1
        self._history = np.zeros((block.shape[0], keep), np.float32)

    def _process(self, block: Block, rate: int) -> list[Block]:
        if self._format.check(self, block, rate):
            self._start(block, rate)
        if self._bank is None:
            return [block.copy()]
        assert self._history is not None
        up, down, taps = self._up, self._down, self._bank.shape[1]
        taken = self._taken + block.shape[1]
        total = (2 * taken * up + down) // (2 * down)
        buf = np.concatenate((self._history, block), axis=1)
        n = np.arange(self._made, total, dtype=np.int64) * down
        keep = self._history.shape[1]
        starts = n // up - self._taken + keep - (taps - 1)
        if up == 1 and starts.size:  # one phase: the windows are a strided view, no gather
            base = buf[:, starts[0] :]
            step = base.strides[1]
            shape = (buf.shape[0], starts.size, taps)
            windows = as_strided(base, shape, (base.strides[0], down * step, step), writeable=False)
            out = windows @ self._bank[0]
        else:
            windows = sliding_window_view(buf, taps, axis=1)[:, starts, :]
            out = np.einsum("cnk,nk->cn", windows, self._bank[n % up])
        self._history = buf[:, buf.shape[1] - keep :].copy()
        made, self._taken, self._made = self._made, taken, total
        return [np.ascontiguousarray(out)] if total > made else []

    def reset(self) -> None:
        self._format.clear()
        self._bank = self._history = None
        self._taken = self._made = 0


__all__ = [
    "ATTENUATION_DB",
    "MAX_PHASES",
    "SETTINGS",
    "TRANSITION",
    "ResampleKernel",
    "design_filter",
]
