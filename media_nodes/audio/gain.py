"""Gain: scales audio by ``gain_db``; changing it ramps linearly over ``ramp_ms``."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from stream.kernel import Block, PyKernel, config_error
from stream.kernel_node import KernelNode

MAX_GAIN_DB = 770.0  # 10 ** (770 / 20) is about 3e38, near float32's largest value


def _check_settings(stage: str, gain_db: float, ramp_ms: float) -> None:
    if not math.isfinite(gain_db) or gain_db > MAX_GAIN_DB:
        raise config_error(
            stage, f"gain_db must be finite and at most {MAX_GAIN_DB}, got {gain_db}"
        )
    if not math.isfinite(ramp_ms) or ramp_ms < 0:
        raise config_error(stage, f"ramp_ms must be a finite number >= 0, got {ramp_ms}")


class GainKernel(PyKernel):
    """Python twin of ``stream._engine.GainKernel`` (docs/kernels.md)."""

    def __init__(self, gain_db: float = 0.0, ramp_ms: float = 5.0, *, stage: str = "gain") -> None:
        super().__init__(stage=stage)
        _check_settings(self.stage, gain_db, ramp_ms)
        self._db = float(gain_db)
        self.ramp_ms = float(ramp_ms)
        self._gain = 10.0 ** (self._db / 20.0)  # gain of the last processed sample
        self._start = self._target = self._gain
        self._ramp_len = self._ramp_pos = 0
        self._rate = 0

    @property
    def gain_db(self) -> float:
        return self._db

    @gain_db.setter
    def gain_db(self, value: float) -> None:
        _check_settings(self.stage, value, self.ramp_ms)
        self._db = float(value)
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
            return [block * np.float32(self._target)]
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
        return [block * gains]

    def reset(self) -> None:
        self._gain = self._start = self._target
        self._ramp_len = self._ramp_pos = 0
        self._rate = 0


class Gain(KernelNode):
    """Scale audio by ``gain_db`` decibels; setting ``gain_db`` later ramps over ``ramp_ms``."""

    native_kernel = "GainKernel"
    python_kernel = GainKernel

    def __init__(
        self,
        gain_db: float = 0.0,
        ramp_ms: float = 5.0,
        *,
        name: str | None = None,
        backend: str | None = None,
    ) -> None:
        super().__init__(name=name, backend=backend)
        _check_settings(self.name, gain_db, ramp_ms)
        self._gain_db = float(gain_db)
        self.ramp_ms = float(ramp_ms)

    def kernel_args(self) -> dict[str, Any]:
        return {"gain_db": self._gain_db, "ramp_ms": self.ramp_ms}

    @property
    def gain_db(self) -> float:
        return self._gain_db

    @gain_db.setter
    def gain_db(self, value: float) -> None:
        _check_settings(self.name, value, self.ramp_ms)
        self._gain_db = float(value)
        if self.kernel is not None:
            self.kernel.gain_db = self._gain_db
