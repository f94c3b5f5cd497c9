"""What the echo kernels' Python twins share (Speex's ``EchoCancelKernel``, ``Aec3Kernel``): the
checks of a near-end block and a far-end one, in the contract's order, and the far end's mix-down.
The Rust kernels share the same in ``rust_engine/src/dsp/reference.rs``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

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


def to_i16(x: Block) -> npt.NDArray[np.int16]:
    """float32 to int16 as FormatConvert does it: ``clip(rint(x * 32768), -32768, 32767)``."""
    q: npt.NDArray[np.int16] = np.clip(np.rint(x * np.float32(32768.0)), -32768, 32767).astype(
        np.int16
    )
    return q


class Int16Frames:
    """The near and far frame being filled for a canceller that takes ``size`` int16 samples of
    each at a time (Speex's frame, AEC3's 10 ms sub-frame)."""

    __slots__ = ("far", "fill", "near", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.near = np.zeros(size, np.int16)
        self.far = np.zeros(size, np.int16)
        self.fill = 0

    def feed(self, near: Block, far: Block) -> Iterator[None]:
        """Take ``near`` and ``far`` (mono float32, one length), quantized; yields each time the
        frame is full (the caller runs the canceller on ``near``/``far`` then), and starts the
        next one after it."""
        xi, fi = to_i16(near), to_i16(far)
        n, pos = len(xi), 0
        while pos < n:
            take = min(self.size - self.fill, n - pos)
            self.near[self.fill : self.fill + take] = xi[pos : pos + take]
            self.far[self.fill : self.fill + take] = fi[pos : pos + take]
            self.fill += take
            pos += take
            if self.fill == self.size:
                yield
                self.fill = 0

    def pad(self) -> int:
        """End of stream: zero the rest of a partial frame; returns how many samples it held."""
        held = self.fill
        self.near[held:] = 0
        self.far[held:] = 0
        self.fill = 0
        return held


__all__ = ["Int16Frames", "PairKernel", "far_mono", "to_i16"]
