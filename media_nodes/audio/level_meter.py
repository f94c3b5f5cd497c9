"""LevelMeter: RMS and peak in dBFS, per frame and over a sliding window, as ``level`` events.

The audio passes through untouched (the same frame object). The kernel (Rust, or the Python twin
below) measures; the node keeps the latest readings as properties and emits a ``level`` event
after a frame at most every ``interval_ms`` of media time. The contract is docs/stages-audio.md.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from stream.errors import ConfigError
from stream.kernel import AnalysisKernel, StreamFormat
from stream.kernel_node import KernelNode, check_audio
from stream.stage_settings import Invalid, Setting, Settings, in_range
from stream.stage_settings import as_number as _number

FLOOR = 1e-10  # linear levels below this read as FLOOR_DB
FLOOR_DB = -200.0
MAX_WINDOW_MS = 60_000.0  # the window's samples are held in memory

Levels = tuple[float, float, float, float]


def to_db(value: float) -> float:
    """``20 * log10(max(value, 1e-10))``: dBFS of a linear amplitude, -200 for silence."""
    return 20.0 * math.log10(max(value, FLOOR))


def as_number(stage: str, name: str, value: Any) -> float:
    """``value`` as a float; anything that is not a real number is a ConfigError, as in Rust."""
    try:
        return _number(name, value)
    except Invalid as exc:
        raise ConfigError(str(exc), stage=stage) from None


def _interval(value: Any) -> float:
    v = _number("interval_ms", value)
    if not (math.isfinite(v) and v >= 0.0):
        raise Invalid(f"interval_ms must be a finite number >= 0, got {v!r}")
    return v


SETTINGS = Settings(
    "LevelMeter",
    Setting(
        "window_ms",
        "float",
        300.0,
        in_range("window_ms", 0.0, MAX_WINDOW_MS, open_low=True),
        doc="length of the sliding window",
    ),
    Setting(
        "interval_ms",
        "float",
        100.0,
        _interval,
        doc="least media time between level events",
        kernel=False,
    ),
)


class LevelMeterKernel(AnalysisKernel[Levels]):
    """Python twin of ``stream._engine.LevelMeterKernel`` (docs/stages-audio.md).

    ``process(samples, sample_rate)`` returns ``(rms_db, peak_db, window_rms_db,
    window_peak_db)``; ``reset()`` starts a new stream.
    """

    def __init__(self, window_ms: float = 300.0, *, stage: str = "level_meter") -> None:
        super().__init__(stage=stage)
        self.window_ms: float = SETTINGS.validate(stage, {"window_ms": window_ms}, kernel=True)[
            "window_ms"
        ]
        self._format = StreamFormat()
        self._window = 0
        self._energy: npt.NDArray[np.float64] = np.zeros(0)
        self._peak: npt.NDArray[np.float32] = np.zeros(0, np.float32)

    @property
    def window_samples(self) -> int | None:
        """The window length in samples of the current stream (None before its first block)."""
        return self._window or None

    def process(self, samples: Any, sample_rate: int) -> Levels:
        block = self.check(samples, sample_rate)
        rate = int(sample_rate)
        if self._format.check(self, block, rate):
            self._window = max(1, round(self.window_ms * rate / 1000.0))
        channels, n = block.shape
        x = block.astype(np.float64)
        energy = np.einsum("ci,ci->i", x, x)  # per instant: sum over channels of x^2
        peak = np.abs(block).max(axis=0)
        w = self._window
        self._energy = np.concatenate((self._energy, energy))[-w:]
        self._peak = np.concatenate((self._peak, peak))[-w:]
        return (
            to_db(math.sqrt(float(energy.sum()) / (channels * n))),
            to_db(float(peak.max())),
            to_db(math.sqrt(float(self._energy.sum()) / (channels * self._energy.size))),
            to_db(float(self._peak.max())),
        )

    def reset(self) -> None:
        self._format.clear()
        self._window = 0
        self._energy = np.zeros(0)
        self._peak = np.zeros(0, np.float32)


class LevelMeter(KernelNode):
    """Passes audio through and measures it: RMS and peak in dBFS of each frame and of the last
    ``window_ms``; a ``level`` event follows a frame at most every ``interval_ms`` of media time.

    Properties ``rms_db``, ``peak_db``, ``window_rms_db``, ``window_peak_db`` hold the latest
    readings (-200.0 before the first frame). Raises ConfigError for bad settings.
    """

    native_kernel = "LevelMeterKernel"
    python_kernel = LevelMeterKernel
    fusable: ClassVar[bool] = False  # it emits events, which a native chain cannot
    settings = SETTINGS
    window_ms: float
    interval_ms: float

    def __init__(
        self,
        window_ms: float = 300.0,
        interval_ms: float = 100.0,
        *,
        name: str | None = None,
        backend: str | None = None,
    ) -> None:
        super().__init__(name=name, backend=backend)
        self.configure(window_ms=window_ms, interval_ms=interval_ms)
        self._levels: Levels = (FLOOR_DB, FLOOR_DB, FLOOR_DB, FLOOR_DB)
        self._interval = 0  # in samples, from the stream's rate
        self._since: int | None = None  # samples since the last event; None: none yet

    def params(self) -> dict[str, Any]:
        return {**super().params(), "interval_ms": self.interval_ms}

    @property
    def rms_db(self) -> float:
        """RMS of the last frame, dBFS."""
        return self._levels[0]

    @property
    def peak_db(self) -> float:
        """Peak of the last frame, dBFS."""
        return self._levels[1]

    @property
    def window_rms_db(self) -> float:
        """RMS of the last ``window_ms``, dBFS."""
        return self._levels[2]

    @property
    def window_peak_db(self) -> float:
        """Peak of the last ``window_ms``, dBFS."""
        return self._levels[3]

    def initialize(self) -> None:
        super().initialize()
        self._restart()

    def _restart(self) -> None:
        self._levels = (FLOOR_DB, FLOOR_DB, FLOOR_DB, FLOOR_DB)
        self._since = None

    def process(self, frame: Any) -> list[Any]:
        audio = check_audio(self.name, frame)
        if audio is None:
            return [frame]
        levels = self._kernel.process(audio.samples, audio.sample_rate)
        self._levels = levels
        since = self._since
        if since is None:  # the stream's first frame: always reported
            self._interval = round(self.interval_ms * audio.sample_rate / 1000.0)
        elif since + audio.num_samples < self._interval:
            self._since = since + audio.num_samples
            return [frame]
        self._since = 0
        rms_db, peak_db, window_rms_db, window_peak_db = levels
        event = self.event(
            "level",
            audio.time,
            rms_db=rms_db,
            peak_db=peak_db,
            window_rms_db=window_rms_db,
            window_peak_db=window_peak_db,
        )
        return [frame, event]

    def flush(self) -> list[Any]:
        self._kernel.reset()
        self._since = None
        return []

    def cleanup(self) -> None:
        super().cleanup()
        self._since = None


__all__ = ["LevelMeter", "LevelMeterKernel"]
