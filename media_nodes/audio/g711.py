"""G711Encode / G711Decode: telephony audio (ITU-T G.711 mu-law and A-law) as stages.

``G711Encode(law)`` turns float32 planar AudioFrames into ``G711Frame``s (one uint8 code per
sample, ``(channels, samples)``, with the frame's rate and timing); ``G711Decode(law)`` turns them
back. Both run the engine's ``G711Kernel`` (``rust_engine/src/dsp/g711.rs``) when it is built,
else its Python twin, bit-exact alike; the twin and the settings are core
(``stream.kernels.g711``: the telephony transport encodes with the same kernels).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np

from stream.errors import FormatError
from stream.frames import MAX_CHANNELS, AudioFrame, rate_problem, timing_problem
from stream.kernel_node import KernelBacked, check_audio
from stream.kernels.g711 import LAWS, SETTINGS, Codes, G711Kernel
from stream.node import Node
from stream.stage_settings import Settings


@dataclass(slots=True, eq=False)
class G711Frame:
    """G.711 audio: ``codes`` uint8 ``(channels, samples)``, ``law`` mulaw or alaw.

    ``sample_rate`` (8000 on a phone line), ``pts``/``time_base`` as on an AudioFrame. Raises
    FormatError for anything else.
    """

    codes: Codes
    law: str = "mulaw"
    sample_rate: int = 8000
    pts: int | None = None
    time_base: Fraction | None = None

    def __post_init__(self) -> None:
        c = self.codes
        problem: str | None = None
        if not isinstance(c, np.ndarray) or c.dtype != np.uint8 or c.ndim != 2:
            problem = "codes must be a 2-D uint8 array (channels, samples)"
        elif not (0 < c.shape[0] <= MAX_CHANNELS and c.shape[1]):
            problem = f"empty or too wide frame ({c.shape[0]} channels, {c.shape[1]} samples)"
        elif self.law not in LAWS:
            problem = f"law must be one of {list(LAWS)}, got {self.law!r}"
        problem = (
            problem or rate_problem(self.sample_rate) or timing_problem(self.pts, self.time_base)
        )
        if problem is not None:
            raise FormatError(f"G711Frame: {problem}")
        self.sample_rate = operator.index(self.sample_rate)
        if self.pts is not None and self.time_base is None:
            self.time_base = Fraction(1, self.sample_rate)

    @property
    def channels(self) -> int:
        return int(self.codes.shape[0])

    @property
    def num_samples(self) -> int:
        return int(self.codes.shape[1])

    @property
    def duration(self) -> float:
        return self.num_samples / self.sample_rate

    def to_bytes(self) -> bytes:
        """The codes as sent on a line: one byte per sample, channels interleaved."""
        return self.codes.T.tobytes()

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        law: str = "mulaw",
        sample_rate: int = 8000,
        channels: int = 1,
        **timing: Any,
    ) -> G711Frame:
        """A frame of ``data`` (interleaved codes); FormatError when it is not whole frames."""
        if channels < 1 or len(data) % channels:
            raise FormatError(
                f"G711Frame: {len(data)} bytes is not whole {channels}-channel frames"
            )
        codes = np.frombuffer(data, np.uint8).reshape(-1, channels).T
        return cls(np.ascontiguousarray(codes), law, sample_rate, **timing)


#: Each stage's settings: the codec's (``SETTINGS``), under the stage's own name (errors say it).
ENCODE_SETTINGS = Settings("G711Encode", *SETTINGS)
DECODE_SETTINGS = Settings("G711Decode", *SETTINGS)


class _G711Stage(KernelBacked, Node):
    native_kernel = "G711Kernel"
    python_kernel = G711Kernel
    settings = SETTINGS
    returns_list: ClassVar[bool] = True  # process() returns its outputs as a list
    law: str

    def __init__(
        self, law: str = "mulaw", *, name: str | None = None, backend: str | None = None
    ) -> None:
        super().__init__(name)
        self._backend_init(backend)
        self.configure(law=law)

    def params(self) -> dict[str, Any]:
        extra = {} if self.requested_backend is None else {"backend": self.requested_backend}
        return {**self.kernel_args(), **extra}

    def initialize(self) -> None:
        self.build_kernel()

    def flush(self) -> list[Any]:
        return []


class G711Encode(_G711Stage):
    """float32 planar AudioFrames -> ``G711Frame``s in ``law``; video and events pass."""

    settings = ENCODE_SETTINGS

    def process(self, item: Any) -> list[Any]:
        audio = check_audio(self.name, item)
        if audio is None:
            return [item]
        codes = self._kernel.encode(audio.samples, audio.sample_rate)
        return [G711Frame(codes, self.law, audio.sample_rate, audio.pts, audio.time_base)]


class G711Decode(_G711Stage):
    """``G711Frame``s in ``law`` -> float32 planar AudioFrames; anything else passes."""

    settings = DECODE_SETTINGS

    def process(self, item: Any) -> list[Any]:
        if not isinstance(item, G711Frame):
            return [item]
        if item.law != self.law:
            raise FormatError(f"expected {self.law} audio, got {item.law}", stage=self.name)
        block = self._kernel.decode(item.codes)
        # a frame changed after construction meets the AudioFrame contract here, naming the stage
        problem = rate_problem(item.sample_rate) or timing_problem(item.pts, item.time_base)
        if problem is not None:
            raise FormatError(problem, stage=self.name)
        return [AudioFrame(block, item.sample_rate, item.pts, item.time_base)]


__all__ = [
    "DECODE_SETTINGS",
    "ENCODE_SETTINGS",
    "SETTINGS",
    "G711Decode",
    "G711Encode",
    "G711Frame",
    "G711Kernel",
]
