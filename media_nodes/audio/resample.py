"""Resample: streaming rational polyphase resampling with a Kaiser-windowed sinc filter.

The kernel's Python twin, its filter design and the settings are core:
``stream.kernels.resample`` (re-exported here).
"""

from __future__ import annotations

from stream.kernel_node import KernelNode
from stream.kernels.resample import (
    ATTENUATION_DB,
    MAX_PHASES,
    SETTINGS,
    TRANSITION,
    ResampleKernel,
    design_filter,
)


class Resample(KernelNode):
    """Resample audio to ``sample_rate`` Hz; the input rate is taken from the stream."""

    native_kernel = "ResampleKernel"
    python_kernel = ResampleKernel
    retimes = True
    settings = SETTINGS
    sample_rate: int

    def __init__(self, sample_rate: int, *, name: str | None = None, backend: str | None = None):
        super().__init__(name=name, backend=backend)
        self.configure(sample_rate=sample_rate)

    @property
    def latency_samples(self) -> int:
        """The filter's delay in output samples (0 before the first frame)."""
        return int(self.kernel.latency_samples) if self.kernel is not None else 0


__all__ = [
    "ATTENUATION_DB",
    "MAX_PHASES",
    "SETTINGS",
    "TRANSITION",
    "Resample",
    "ResampleKernel",
    "design_filter",
]
