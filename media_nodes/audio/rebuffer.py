"""Rebuffer: re-chunks an audio stream into blocks of a fixed size.

End of stream: the leftover samples come out as one shorter block, or zero-padded to the full
size with ``pad_final=True``. No sample is dropped or repeated.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from stream.kernel import Block, PyKernel, StreamFormat, config_error
from stream.kernel_node import KernelNode


def _check_size(stage: str, samples: int | None, frame_ms: float | None) -> None:
    if (samples is None) == (frame_ms is None):
        raise config_error(stage, "give exactly one of samples or frame_ms")
    if samples is not None and (
        isinstance(samples, bool) or not isinstance(samples, int) or samples < 1
    ):
        raise config_error(stage, f"samples must be an int >= 1, got {samples!r}")
    if frame_ms is not None and (not math.isfinite(frame_ms) or frame_ms <= 0):
        raise config_error(stage, f"frame_ms must be > 0, got {frame_ms!r}")


class RebufferKernel(PyKernel):
    """Python twin of ``stream._engine.RebufferKernel`` (docs/kernels.md)."""

    def __init__(
        self,
        samples: int | None = None,
        frame_ms: float | None = None,
        pad_final: bool = False,
        *,
        stage: str = "rebuffer",
    ) -> None:
        super().__init__(stage=stage)
        _check_size(self.stage, samples, frame_ms)
        self.samples, self.frame_ms, self.pad_final = samples, frame_ms, pad_final
        self._format = StreamFormat()
        self._size = 0
        self._pending: list[Block] = []
        self._held = 0

    def _process(self, block: Block, rate: int) -> list[Block]:
        if self._format.check(self, block, rate):
            assert self.frame_ms is not None or self.samples is not None
            self._size = self.samples or max(1, round(rate * self.frame_ms / 1000.0))  # type: ignore[operator]
        self._pending.append(block.copy())  # the caller may reuse its buffer
        self._held += block.shape[1]
        if self._held < self._size:
            return []
        pending = self._pending
        data = np.concatenate(pending, axis=1) if len(pending) > 1 else pending[0]
        full = self._held // self._size * self._size
        out = [data[:, i : i + self._size].copy() for i in range(0, full, self._size)]
        rest = data[:, full:]
        self._pending = [rest.copy()] if rest.shape[1] else []
        self._held = rest.shape[1]
        return out

    def flush(self) -> list[Block]:
        out: list[Block] = []
        if self._held:
            data = np.concatenate(self._pending, axis=1)
            if self.pad_final:
                data = np.pad(data, ((0, 0), (0, self._size - self._held)))
            out.append(np.ascontiguousarray(data))
        self.reset()
        return out

    def reset(self) -> None:
        self._pending, self._held = [], 0
        self._format.clear()


class Rebuffer(KernelNode):
    """Re-chunk audio to ``samples`` per frame (or ``frame_ms``), e.g. 20 ms to 512 samples."""

    native_kernel = "RebufferKernel"
    python_kernel = RebufferKernel
    retimes = True

    def __init__(
        self,
        samples: int | None = None,
        frame_ms: float | None = None,
        pad_final: bool = False,
        *,
        name: str | None = None,
        backend: str | None = None,
    ) -> None:
        super().__init__(name=name, backend=backend)
        _check_size(self.name, samples, frame_ms)
        self.samples, self.frame_ms, self.pad_final = samples, frame_ms, pad_final

    def kernel_args(self) -> dict[str, Any]:
        return {"samples": self.samples, "frame_ms": self.frame_ms, "pad_final": self.pad_final}
