"""Rebuffer: re-chunks an audio stream into blocks of a fixed size.

End of stream: the leftover samples come out as one shorter block, or zero-padded to the full
size with ``pad_final=True``. No sample is dropped or repeated. The kernel's Python twin and the
settings are core: ``stream.kernels.rebuffer`` (re-exported here).
"""

from __future__ import annotations

from stream.kernel_node import KernelNode
from stream.kernels.rebuffer import SETTINGS, RebufferKernel


class Rebuffer(KernelNode):
    """Re-chunk audio to ``samples`` per frame (or ``frame_ms``), e.g. 20 ms to 512 samples."""

    native_kernel = "RebufferKernel"
    python_kernel = RebufferKernel
    retimes = True
    settings = SETTINGS
    samples: int | None
    frame_ms: float | None
    pad_final: bool

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
        self.configure(samples=samples, frame_ms=frame_ms, pad_final=pad_final)


__all__ = ["SETTINGS", "Rebuffer", "RebufferKernel"]
