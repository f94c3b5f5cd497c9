"""RebufferKernel, the Python twin of Rebuffer, and its SETTINGS.

Re-chunks an audio stream into blocks of a fixed size.

End of stream: the leftover samples come out as one shorter block, or zero-padded to the full
size with ``pad_final=True``. No sample is dropped or repeated.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..kernel import Block, PyKernel, StreamFormat
from ..stage_settings import Invalid, Setting, Settings


def _samples(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"samples must be an int, got {value!r}")  # the engine's words
    if value < 1:
        raise Invalid(f"samples must be an int >= 1, got {value!r}")
    return value


def _frame_ms(value: Any) -> float | None:
    if value is not None and (not math.isfinite(value) or value <= 0):
        raise Invalid(f"frame_ms must be > 0, got {value!r}")
    result: float | None = value
    return result


def _pad_final(value: Any) -> bool:
    return bool(value)


def _exactly_one(values: dict[str, Any]) -> None:
    if (values["samples"] is None) == (values["frame_ms"] is None):
        raise Invalid("give exactly one of samples or frame_ms")


SETTINGS = Settings(
    "Rebuffer",
    Setting("samples", "int | None", None, _samples, doc="block size in samples"),
    Setting("frame_ms", "float | None", None, _frame_ms, doc="block size in ms of the rate"),
    Setting("pad_final", "bool", False, _pad_final, doc="zero-pad the last block to full size"),
    first=_exactly_one,
)


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
        values = SETTINGS.validate(
            stage, {"samples": samples, "frame_ms": frame_ms, "pad_final": pad_final}, kernel=True
        )
        self.samples: int | None = values["samples"]
        self.frame_ms: float | None = values["frame_ms"]
        self.pad_final: bool = values["pad_final"]
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


__all__ = ["SETTINGS", "RebufferKernel"]
