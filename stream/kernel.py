"""Bases of the Python twins of the engine's kernels (see docs/kernels.md for the contract).

- ``KernelChecks``: what every audio twin shares: its stage's name, typed errors, the input checks.
- ``PyKernel``: a block stage's twin: audio in, audio out (``process(samples, rate) -> blocks``).
- ``AnalysisKernel[D]``: an analysis stage's twin: audio in, decisions out
  (``process(samples, rate) -> D``: levels, VAD decisions).

A twin with another calling shape (EchoCancel's near and far blocks, FormatConvert's sample
formats) derives from ``KernelChecks`` and defines its own ``process``.
"""

from __future__ import annotations

import math
from typing import Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt

from .errors import ConfigError, FormatError, StreamError
from .frames import as_int, rate_problem, samples_problem

Block = npt.NDArray[np.float32]


D = TypeVar("D")


class KernelChecks:
    """The stage's name, typed errors naming it, and the contract's input checks (1 to 4)."""

    def __init__(self, *, stage: str) -> None:
        self.stage = stage

    def error(self, cls: type[StreamError], message: str) -> StreamError:
        """An error of ``cls`` naming this kernel's stage, as the Rust twin raises it."""
        return cls(message, stage=self.stage)

    def check(self, samples: Any, sample_rate: Any) -> Block:
        """Validate one block in the contract's order (checks 1 to 4); returns it C-contiguous."""
        problem = samples_problem(samples, float_only=True) or rate_problem(sample_rate)
        if problem is not None:
            raise self.error(FormatError, problem)
        # A finite sum proves every sample finite (NaN and inf propagate); only a non-finite sum,
        # which a huge finite signal can also give, needs the elementwise look.
        if not math.isfinite(samples.sum()):
            bad = np.argwhere(~np.isfinite(samples))
            if bad.size:
                c, i = bad[0]
                raise self.error(FormatError, f"non-finite sample at channel {c}, index {i}")
        return np.ascontiguousarray(samples)

    def rate(self, sample_rate: Any) -> int:
        """``sample_rate`` as an int, checked as check 3 of the contract does."""
        problem = rate_problem(sample_rate)
        if problem is not None:
            raise self.error(FormatError, problem)
        return as_int(sample_rate)  # type: ignore[return-value]

    def reset(self) -> None:
        """Forget the stream: the next block starts a new one."""
        return None


class PyKernel(KernelChecks):
    """A block stage's twin: subclasses implement ``_process`` on a validated block."""

    def process(self, samples: Any, sample_rate: int) -> list[Block]:
        block = self.check(samples, sample_rate)
        return self._process(block, self.rate(sample_rate))

    def _process(self, block: Block, rate: int) -> list[Block]:
        return [block.copy()]

    def flush(self) -> list[Block]:
        self.reset()
        return []

    def output_rate(self, input_rate: int) -> int:
        return self.rate(input_rate)


class AnalysisKernel(KernelChecks, Generic[D]):
    """An analysis stage's twin: ``process`` returns what it decided about a block (``D``)."""

    def process(self, samples: Any, sample_rate: int) -> D:
        raise NotImplementedError


class StreamFormat:
    """The rate and channel count a stateful kernel's stream started with."""

    __slots__ = ("channels", "rate")

    def __init__(self) -> None:
        self.rate = 0
        self.channels = 0

    def check(self, kernel: KernelChecks, block: Block, rate: int) -> bool:
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
    return ConfigError(message, stage=stage)


__all__ = ["AnalysisKernel", "Block", "KernelChecks", "PyKernel", "StreamFormat", "config_error"]
