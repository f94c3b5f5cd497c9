"""Gain: scales audio by ``gain_db``; changing it ramps linearly over ``ramp_ms``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from stream.errors import FormatError
from stream.kernel import Block, PyKernel
from stream.kernel_node import KernelNode
from stream.stage_settings import Invalid, Setting, Settings, as_number

MAX_GAIN_DB = 770.0  # 10 ** (770 / 20) is about 3e38, near float32's largest value


def _gain_db(value: Any) -> float:
    v = as_number("gain_db", value)
    if not math.isfinite(v) or v > MAX_GAIN_DB:
        raise Invalid(f"gain_db must be finite and at most {MAX_GAIN_DB}, got {v}")
    return v


def _ramp_ms(value: Any) -> float:
    v = as_number("ramp_ms", value)
    if not math.isfinite(v) or v < 0:
        raise Invalid(f"ramp_ms must be a finite number >= 0, got {v}")
    return v


SETTINGS = Settings(
    "Gain",
    Setting("gain_db", "float", 0.0, _gain_db, live=True, doc="gain in dB; a change ramps"),
    Setting("ramp_ms", "float", 5.0, _ramp_ms, doc="length of the ramp a gain change starts"),
)


class GainKernel(PyKernel):
    """Python twin of ``stream._engine.GainKernel`` (docs/kernels.md)."""

    def __init__(self, gain_db: float = 0.0, ramp_ms: float = 5.0, *, stage: str = "gain") -> None:
        super().__init__(stage=stage)
        values = SETTINGS.validate(stage, {"gain_db": gain_db, "ramp_ms": ramp_ms}, kernel=True)
        self._db: float = values["gain_db"]
        self.ramp_ms = values["ramp_ms"]
        self._gain = 10.0 ** (self._db / 20.0)  # gain of the last processed sample
        self._start = self._target = self._gain
        self._ramp_len = self._ramp_pos = 0
        self._rate = 0

    @property
    def gain_db(self) -> float:
        return self._db

    @gain_db.setter
    def gain_db(self, value: float) -> None:
        self._db = SETTINGS.change(self.stage, {"ramp_ms": self.ramp_ms}, "gain_db", value)
        target = 10.0 ** (self._db / 20.0)
        ramp = round(self.ramp_ms * self._rate / 1000.0) if self._rate else 0
        self._start, self._target = self._gain, target
        self._ramp_len, self._ramp_pos = ramp, 0
        if ramp == 0:
            self._gain = target

    def _process(self, block: Block, rate: int) -> list[Block]:
        self._rate = rate
        n = block.shape[1]
        if self._ramp_pos >= self._ramp_len:
            return self._scaled(block, np.float32(self._target))
        m = min(n, self._ramp_len - self._ramp_pos)
        k = np.arange(self._ramp_pos + 1, self._ramp_pos + m + 1, dtype=np.float64)
        gains = np.full(n, self._target, dtype=np.float32)
        gains[:m] = (self._start + (self._target - self._start) * k / self._ramp_len).astype(
            np.float32
        )
        self._ramp_pos += m
        done = self._ramp_pos / self._ramp_len
        self._gain = (
            self._target if done >= 1 else self._start + (self._target - self._start) * done
        )
        return self._scaled(block, gains)

    def _scaled(self, block: Block, gains: Any) -> list[Block]:
        """``block * gains``; FormatError where a gain above 1 took a sample past float32's range
        (later stages of a fused chain do not check their input again: the engine says it
        here, and so does the twin). Gains up to 1 cannot overflow: no check, no cost."""
        if not (self._target > 1.0 or self._start > 1.0):
            return [block * gains]
        with np.errstate(over="ignore"):  # reported below, typed
            out = block * gains
            finite = math.isfinite(out.sum())  # a huge but finite sum may overflow: look then
        bad = np.argwhere(~np.isfinite(out)) if not finite else np.empty((0, 2), np.intp)
        if len(bad):
            c, i = bad[0]
            raise self.error(
                FormatError,
                f"output overflows float32 at channel {c}, index {i}: lower gain_db or "
                "the input level",
            )
        return [out]

    def reset(self) -> None:
        self._gain = self._start = self._target
        self._ramp_len = self._ramp_pos = 0
        self._rate = 0


class Gain(KernelNode):
    """Scale audio by ``gain_db`` decibels; setting ``gain_db`` later ramps over ``ramp_ms``."""

    native_kernel = "GainKernel"
    python_kernel = GainKernel
    settings = SETTINGS
    gain_db: float  # live: a change reaches the running kernel, which ramps to it
    ramp_ms: float

    def __init__(
        self,
        gain_db: float = 0.0,
        ramp_ms: float = 5.0,
        *,
        name: str | None = None,
        backend: str | None = None,
    ) -> None:
        super().__init__(name=name, backend=backend)
        self.configure(gain_db=gain_db, ramp_ms=ramp_ms)
