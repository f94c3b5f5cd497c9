"""What the echo kernels' Python twins share (Speex's ``EchoCancelKernel``, ``Aec3Kernel``): the
checks of a near-end block and a far-end one, in the contract's order, and the far end's mix-down.
The Rust kernels share the same in ``rust_engine/src/dsp/reference.rs``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stream.errors import FormatError
from stream.kernel import Block, KernelChecks


class PairKernel(KernelChecks):
    """Base of a twin whose ``process(near, far, sample_rate)`` takes two blocks."""

    def _check_array(self, side: str, x: Any) -> None:
        if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 2:
            raise self.error(
                FormatError,
                f"{side}: expected a float32 array of shape (channels, samples), got "
                f"{getattr(x, 'dtype', type(x).__name__)} with {getattr(x, 'ndim', 0)} "
                "dimension(s)",
            )

    def rate_problem(self, rate: int) -> str | None:
        """The kernel's own words for a rate it cannot run at; None when it can."""
        return None

    def check_pair(
        self, near: Any, far: Any, sample_rate: Any, started: tuple[int, int] | None
    ) -> tuple[Block, Block, int]:
        """``(near, far, rate)`` checked: near (checks 1 to 4), far (the same), near mono, far
        as long as near, the rate (``rate_problem``), then no change from the stream's
        ``started`` (rate, far channels). FormatError naming the stage and the side."""
        self._check_array("near", near)
        self._check_array("far", far)
        blocks = []
        for side, block in (("near", near), ("far", far)):
            try:
                blocks.append(self.check(block, sample_rate))
            except FormatError as exc:
                raise self.error(FormatError, f"{side}: {exc.message}") from None
        x, f = blocks
        rate = int(sample_rate)
        if x.shape[0] != 1:
            raise self.error(
                FormatError,
                f"near: echo cancellation takes mono near-end audio, got {x.shape[0]} channels; "
                "put ChannelMix(1) before it",
            )
        n = x.shape[1]
        if f.shape[1] != n:
            raise self.error(
                FormatError,
                f"far: {f.shape[1]} samples, expected {n} (one far-end block per near-end block)",
            )
        problem = self.rate_problem(rate)
        if problem is not None:
            raise self.error(FormatError, problem)
        if started is not None:
            if rate != started[0]:
                raise self.error(
                    FormatError, f"sample rate changed mid-stream from {started[0]} to {rate} Hz"
                )
            if f.shape[0] != started[1]:
                raise self.error(
                    FormatError,
                    f"far: channel count changed mid-stream from {started[1]} to {f.shape[0]}",
                )
        return x, f, rate


def far_mono(f: Block) -> Block:
    """The far end mixed down: the channels' float32 sum in channel order, times float32(1 / C),
    as the Rust kernels compute it."""
    mono: Block = f[0].copy()
    if f.shape[0] > 1:
        for c in range(1, f.shape[0]):
            mono += f[c]
        mono *= np.float32(1.0 / f.shape[0])
    return mono


__all__ = ["PairKernel", "far_mono"]
