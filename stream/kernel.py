"""Base of the Python twins of the engine's kernels (see docs/kernels.md for the contract)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import ConfigError, FormatError, StreamError

Block = npt.NDArray[np.float32]


class PyKernel:
    """Shared checks and defaults; subclasses implement ``_process`` on a validated block."""

    def __init__(self, *, stage: str) -> None:
        self.stage = stage

    def error(self, cls: type[StreamError], message: str) -> StreamError:
        """An error of ``cls`` naming this kernel's stage, as the Rust twin raises it."""
        err = cls(f"{self.stage}: {message}")
        err.stage = self.stage
        return err

    def check(self, samples: Any, sample_rate: int) -> Block:
        """Validate one block in the contract's order; returns it C-contiguous."""
        if not isinstance(samples, np.ndarray) or samples.dtype != np.float32 or samples.ndim != 2:
            dtype = getattr(samples, "dtype", type(samples).__name__)
            ndim = getattr(samples, "ndim", 0)
            raise self.error(
                FormatError,
                "expected a float32 array of shape (channels, samples), "
                f"got {dtype} with {ndim} dimension(s)",
            )
        channels, n = samples.shape
        if channels == 0 or n == 0:
            raise self.error(FormatError, f"empty frame ({channels} channels, {n} samples)")
        if sample_rate <= 0:
            raise self.error(FormatError, f"invalid sample rate {sample_rate}")
        # A finite sum proves every sample finite (NaN and inf propagate); only a non-finite sum,
        # which a huge finite signal can also give, needs the elementwise look.
        if not math.isfinite(samples.sum()):
            bad = np.argwhere(~np.isfinite(samples))
            if bad.size:
                c, i = bad[0]
                raise self.error(FormatError, f"non-finite sample at channel {c}, index {i}")
        return np.ascontiguousarray(samples)

    def process(self, samples: Any, sample_rate: int) -> list[Block]:
        return self._process(self.check(samples, sample_rate), int(sample_rate))

    def _process(self, block: Block, rate: int) -> list[Block]:
        return [block.copy()]

    def flush(self) -> list[Block]:
        self.reset()
        return []

    def reset(self) -> None:
        return None

    def output_rate(self, input_rate: int) -> int:
        return input_rate


class StreamFormat:
    """The rate and channel count a stateful kernel's stream started with."""

    __slots__ = ("channels", "rate")

    def __init__(self) -> None:
        self.rate = 0
        self.channels = 0

    def check(self, kernel: PyKernel, block: Block, rate: int) -> bool:
        """True on the stream's first block; FormatError when rate or channels change."""
        if self.rate == 0:
            self.rate, self.channels = rate, block.shape[0]
            return True
        if rate != self.rate:
            raise kernel.error(
                FormatError, f"sample rate changed mid-stream from {self.rate} to {rate} Hz"
            )
        if block.shape[0] != self.channels:
            raise kernel.error(
                FormatError,
                f"channel count changed mid-stream from {self.channels} to {block.shape[0]}",
            )
        return False

    def clear(self) -> None:
        self.rate = self.channels = 0


def config_error(stage: str, message: str) -> ConfigError:
    """A ConfigError naming ``stage``, as the engine raises it."""
    err = ConfigError(f"{stage}: {message}")
    err.stage = stage
    return err


__all__ = ["Block", "PyKernel", "StreamFormat", "config_error"]
