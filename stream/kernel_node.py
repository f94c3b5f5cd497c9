"""Audio stages backed by a kernel (Rust or its Python twin), and fused runs of native kernels.

A ``KernelNode`` checks that it was given float32 planar audio (video frames pass through
untouched, so audio stages sit in an audio+video stream), hands the block to its kernel and
stamps the outputs: stages that keep the frame size keep the input's pts; stages that re-time audio
(resampling, re-chunking) stamp outputs from a sample clock, so pts stay continuous.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, ClassVar

import numpy as np

from .engine import make_chain, resolve_mode, select_kernel
from .errors import FormatError
from .frames import AudioFrame, VideoFrame, audio_frame_unchecked
from .node import Node


class SampleClock:
    """Stamps a re-timed audio stream: pts counted in output samples from the first input's time."""

    __slots__ = ("count", "origin", "started", "time_base")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.started = False
        self.origin: int | None = None
        self.count = 0
        self.time_base: Fraction | None = None

    def start(self, first: AudioFrame, rate: int) -> None:
        """Anchor the clock at the stream's first input frame; output runs at ``rate``."""
        self.started = True
        if first.pts is not None and first.time_base is not None:
            self.origin = round(first.pts * first.time_base * rate)
            self.time_base = Fraction(1, rate)

    def stamp(self, samples: int) -> int | None:
        """pts of the next ``samples`` output samples."""
        pts = None if self.origin is None else self.origin + self.count
        self.count += samples
        return pts


def _stage_error(stage: str, message: str) -> FormatError:
    err = FormatError(f"{stage}: {message}")
    err.stage = stage
    return err


def _check_audio(stage: str, frame: Any) -> AudioFrame | None:
    """The frame if it is float32 planar audio; None for video, which audio stages pass on."""
    if not isinstance(frame, AudioFrame):
        if isinstance(frame, VideoFrame):
            return None
        raise _stage_error(stage, f"expected an AudioFrame, got {type(frame).__name__}")
    samples = frame.samples
    if not frame.planar or samples.dtype != np.float32:
        known = samples.dtype in (np.float32, np.int16)
        got = frame.format if known else f"{samples.dtype} samples"
        raise _stage_error(
            stage,
            f"expects float32 planar audio (fltp), got {got}; "
            "put FormatConvert(format='fltp') before it",
        )
    return frame


class _KernelRunner:
    """Shared per-frame path of a KernelNode and a FusedSegment."""

    name: str
    _kernel: Any
    _retimes: bool
    _clock: SampleClock
    _rate_in: int
    _rate_out: int

    def _run(self, frame: AudioFrame, blocks: list[Any]) -> list[Any]:
        rate = frame.sample_rate
        if rate != self._rate_in:
            self._rate_in, self._rate_out = rate, int(self._kernel.output_rate(rate))
        if not self._retimes:
            return [audio_frame_unchecked(b, rate, frame.pts, frame.time_base) for b in blocks]
        clock = self._clock
        if not clock.started:
            clock.start(frame, self._rate_out)
        tb = clock.time_base
        return [
            audio_frame_unchecked(b, self._rate_out, clock.stamp(b.shape[1]), tb) for b in blocks
        ]

    def _flush(self) -> list[Any]:
        clock = self._clock
        out = [
            audio_frame_unchecked(b, self._rate_out, clock.stamp(b.shape[1]), clock.time_base)
            for b in self._kernel.flush()
        ]
        clock.reset()
        return out


class KernelNode(_KernelRunner, Node):
    """A built-in audio stage with a Rust kernel and a Python twin of the same name.

    ``backend``: ``"auto"`` (default: ``REMOTEMEDIA_RUNTIME`` or auto), ``"rust"`` or ``"python"``.
    After ``initialize()``, ``backend`` says which ran and ``backend_reason`` why.
    """

    native_kernel: ClassVar[str | None] = None  # class name in stream._engine
    python_kernel: ClassVar[type[Any]]  # the Python twin, same name and arguments
    retimes: ClassVar[bool] = False  # emits frames of other sizes/rates than it takes
    fusable: ClassVar[bool] = True
    returns_list: ClassVar[bool] = True
    accepts_any: ClassVar[bool] = False

    def __init__(self, *, name: str | None = None, backend: str | None = None) -> None:
        super().__init__(name)
        if backend is not None:
            resolve_mode(backend)  # ConfigError on a bad value, at construction
        self.requested_backend = backend
        self.backend = "unset"
        self.backend_reason = "not initialized"
        self._kernel: Any = None
        self._retimes = self.retimes
        self._clock = SampleClock()
        self._rate_in = self._rate_out = 0

    def kernel_args(self) -> dict[str, Any]:
        """The kernel's constructor arguments (both twins take the same)."""
        return {}

    def params(self) -> dict[str, Any]:
        extra = {} if self.requested_backend is None else {"backend": self.requested_backend}
        return {**self.kernel_args(), **extra}

    @property
    def kernel(self) -> Any:
        """The kernel object (Rust or Python) built by ``initialize()``."""
        return self._kernel

    def initialize(self) -> None:
        self._kernel, self.backend, self.backend_reason = select_kernel(
            self.name,
            self.requested_backend,
            self.native_kernel,
            self.python_kernel,
            self.kernel_args(),
            self.force_python,
        )
        self._clock.reset()
        self._rate_in = 0

    def process(self, frame: Any) -> list[Any]:
        audio = _check_audio(self.name, frame)
        if audio is None:
            return [frame]
        return self._run(audio, self._kernel.process(audio.samples, audio.sample_rate))

    def flush(self) -> list[Any]:
        return self._flush()

    def cleanup(self) -> None:
        if self._kernel is not None:
            self._kernel.reset()


class FusedSegment(_KernelRunner, Node):
    """Consecutive native stages run as one engine call per frame, GIL released.

    Built by the pipeline; each stage keeps its own kernel (and state), and errors still name the
    stage that raised.
    """

    returns_list: ClassVar[bool] = True
    backend = "rust"
    backend_reason = "fused native segment"

    def __init__(self, nodes: list[KernelNode]) -> None:
        super().__init__("+".join(n.name for n in nodes))
        self.nodes = nodes
        self._kernel = make_chain([n.kernel for n in nodes])
        self._retimes = any(n.retimes for n in nodes)
        self._passthrough_only = all(n.accepts_any for n in nodes)
        self._first_strict = next((n.name for n in nodes if not n.accepts_any), self.name)
        self._clock = SampleClock()
        self._rate_in = self._rate_out = 0

    def process(self, frame: Any) -> list[Any]:
        if self._passthrough_only:
            return [frame]
        audio = _check_audio(self._first_strict, frame)
        if audio is None:
            return [frame]
        return self._run(audio, self._kernel.process(audio.samples, audio.sample_rate))

    def flush(self) -> list[Any]:
        return self._flush()

    def cleanup(self) -> None:
        self._kernel.reset()


__all__ = ["FusedSegment", "KernelNode", "SampleClock"]
