"""Audio stages backed by a kernel (Rust or its Python twin), and fused runs of native kernels.

A ``KernelNode`` checks that it was given a float32 planar AudioFrame with good timing (video
frames pass through untouched, so audio stages sit in an audio+video stream), hands the block to
its kernel, which checks the samples and the rate (docs/kernels.md, the same words on both
backends), and stamps the outputs: stages that keep the frame size keep the input's pts; stages
that re-time audio (resampling, re-chunking) stamp outputs from a sample clock, so pts stay
continuous.
"""

from __future__ import annotations

import operator
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np

from .engine import make_chain, resolve_mode, select_kernel
from .errors import FormatError
from .frames import (
    MAX_CHANNELS,
    MAX_SAMPLE_RATE,
    AudioFrame,
    VideoFrame,
    audio_frame_unchecked,
    rate_problem,
    samples_problem,
    timing_problem,
)
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


_F32 = np.dtype(np.float32)


def check_audio(stage: str, item: Any, what: str = "", fltp: bool = True) -> AudioFrame | None:
    """``item`` if it is an AudioFrame that holds what a frame may hold (stream.frames) and, with
    ``fltp``, float32 planar audio; None for video, which audio stages pass on. Anything else is
    a FormatError naming ``stage``, its message prefixed by ``what`` (e.g. ``"input 2: "``).

    The constructor checked the frame, but frames are mutable: this is the stage's own look at
    what it was handed. Sample values (NaN, inf) are the kernels' check 4.
    """
    if type(item) is AudioFrame:
        samples, rate, pts, tb = item.samples, item.sample_rate, item.pts, item.time_base
        # The common case in a handful of reads; anything unusual takes the long way.
        if (
            fltp
            and item.planar
            and type(samples) is np.ndarray
            and samples.dtype is _F32
            and len(shape := samples.shape) == 2
            and 0 < shape[0] <= MAX_CHANNELS
            and shape[1]
            and type(rate) is int
            and 0 < rate <= MAX_SAMPLE_RATE
            and (pts is None or type(pts) is int)
            and (tb is None or (type(tb) is Fraction and tb.numerator > 0))
        ):
            return item
    elif not isinstance(item, AudioFrame):
        if isinstance(item, VideoFrame):
            return None
        raise FormatError(f"{what}expected an AudioFrame, got {type(item).__name__}", stage=stage)
    samples = item.samples
    problem: str | None
    if fltp and not samples_problem(samples, item.planar) and item.format != "fltp":
        problem = (
            f"expects float32 planar audio (fltp), got {item.format}; "
            "put FormatConvert(format='fltp') before it"
        )
    else:
        problem = samples_problem(samples, item.planar, float_only=fltp)
    problem = problem or rate_problem(item.sample_rate) or timing_problem(item.pts, item.time_base)
    if problem is not None:
        raise FormatError(what + problem, stage=stage)
    # Numpy integers become plain ints, as the constructor makes them (PyAV, JSON want ints).
    item.sample_rate = operator.index(item.sample_rate)
    if item.pts is not None:
        item.pts = operator.index(item.pts)
    return item


_check_audio = check_audio  # the name media_nodes.devices.speaker imports it by


def _kernel_input(stage: str, item: Any) -> AudioFrame | None:
    """``check_audio`` for a stage whose kernel checks the samples and rate itself (checks 1 to 4
    of docs/kernels.md, same words on both twins): a float32 planar frame with good timing goes
    straight to the kernel; anything else takes the full look."""
    if type(item) is AudioFrame and item.planar:
        samples, pts, tb = item.samples, item.pts, item.time_base
        if (
            type(samples) is np.ndarray
            and samples.dtype is _F32
            and (pts is None or type(pts) is int)
            and (tb is None or (type(tb) is Fraction and tb.numerator > 0))
        ):
            return item
    return check_audio(stage, item)


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
        if type(rate) is not int:  # a numpy integer the kernel took: outputs get a plain int
            rate = operator.index(rate)
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


class KernelBacked:
    """What every stage whose work is a kernel shares: the backend it asked for, the one it got
    and why, and the kernel, chosen by ``stream.engine.select_kernel`` (the one place).

    Stages that are not plain block stages (``Mixer``, ``EchoCancel``) take this and a ``Node``
    base of their own; ``KernelNode`` is this plus the block-stage contract. Call
    ``_backend_init`` in the constructor and ``build_kernel`` in ``initialize``.
    """

    native_kernel: ClassVar[str | None] = None  # class name in stream._engine
    python_kernel: ClassVar[type[Any]]  # the Python twin, same name and arguments
    name: str
    force_python: bool
    settings: ClassVar[Any]
    _settings: dict[str, Any]

    def _backend_init(self, backend: str | None) -> None:
        if backend is not None:
            resolve_mode(backend)  # ConfigError on a bad value, at construction
        self.requested_backend = backend
        self.backend = "unset"
        self.backend_reason = "not initialized"
        self._kernel: Any = None

    def kernel_args(self) -> dict[str, Any]:
        """The kernel's constructor arguments (both twins take the same): every kernel setting,
        explicitly, so no default inside a kernel decides anything."""
        settings = type(self).settings
        return {} if settings is None else settings.kernel_args(self._settings)

    def build_kernel(self) -> Any:
        """Build the kernel on the backend the rules pick; ``backend``/``backend_reason`` say
        which and why."""
        self._kernel, self.backend, self.backend_reason = select_kernel(
            self.name,
            self.requested_backend,
            self.native_kernel,
            self.python_kernel,
            self.kernel_args(),
            self.force_python,
        )
        return self._kernel

    @property
    def kernel(self) -> Any:
        """The kernel object (Rust or Python) built by ``initialize()``."""
        return self._kernel


class KernelNode(KernelBacked, _KernelRunner, Node):
    """A built-in audio stage with a Rust kernel and a Python twin of the same name.

    ``backend``: ``"auto"`` (default: ``REMOTEMEDIA_RUNTIME`` or auto), ``"rust"`` or ``"python"``.
    After ``initialize()``, ``backend`` says which ran and ``backend_reason`` why.
    """

    retimes: ClassVar[bool] = False  # emits frames of other sizes/rates than it takes
    fusable: ClassVar[bool] = True
    returns_list: ClassVar[bool] = True
    accepts_any: ClassVar[bool] = False

    def __init__(self, *, name: str | None = None, backend: str | None = None) -> None:
        super().__init__(name)
        self._backend_init(backend)
        self._retimes = self.retimes
        self._clock = SampleClock()
        self._rate_in = self._rate_out = 0

    def apply_live(self, name: str, value: Any) -> None:
        """Hands a live setting to the running kernel (Rust or twin; inside a fused chain the
        kernel is the same object, and its setter waits for the chain's call to end)."""
        if self._kernel is not None:
            setattr(self._kernel, name, value)

    def params(self) -> dict[str, Any]:
        extra = {} if self.requested_backend is None else {"backend": self.requested_backend}
        return {**self.kernel_args(), **extra}

    def initialize(self) -> None:
        self.build_kernel()
        self._clock.reset()
        self._rate_in = 0

    def process(self, frame: Any) -> list[Any]:
        audio = _kernel_input(self.name, frame)
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
        audio = _kernel_input(self._first_strict, frame)
        if audio is None:
            return [frame]
        return self._run(audio, self._kernel.process(audio.samples, audio.sample_rate))

    def flush(self) -> list[Any]:
        return self._flush()

    def cleanup(self) -> None:
        self._kernel.reset()


__all__ = ["FusedSegment", "KernelNode", "SampleClock", "check_audio"]
