"""The compiled engine (``rust_engine/``): audio kernels with the contract of docs/kernels.md.

Only ``stream.engine`` imports this module. Blocks are C-contiguous ``float32`` arrays of shape
``(channels, samples)``; every error is a ``stream.errors`` class whose ``stage`` attribute names
the kernel. A kernel used by two calls at once raises ``RuntimeError``.
"""

from typing import Final, Self, TypeAlias, final

import numpy as np
import numpy.typing as npt
from typing_extensions import disjoint_base

__version__: Final[str]
__all__ = [
    "Chain",
    "ChannelMixKernel",
    "FormatConvertKernel",
    "GainKernel",
    "Kernel",
    "PassThroughKernel",
    "RebufferKernel",
    "ResampleKernel",
    "__version__",
    "selftest_panic",
]

_Block: TypeAlias = npt.NDArray[np.float32]

@disjoint_base
class Kernel:
    """Base class of the kernels a ``Chain`` can fuse; holds one stage's stream state."""

    def process(self, samples: _Block, sample_rate: int) -> list[_Block]:
        """Processes one block at ``sample_rate`` Hz; returns zero or more output blocks.

        Raises ``FormatError`` for a bad block (dtype, shape, empty, rate, non-finite, or a
        rate/channel change mid-stream in stateful kernels).
        """

    def flush(self) -> list[_Block]:
        """Ends the stream: returns any tail, then resets the stream state."""

    def reset(self) -> None:
        """Drops the stream state without emitting."""

    def output_rate(self, input_rate: int) -> int:
        """The sample rate (Hz) of the blocks emitted for input at ``input_rate`` Hz."""

    @property
    def stage(self) -> str:
        """The stage name errors carry."""

@final
class PassThroughKernel(Kernel):
    """Returns its input array unchanged (skipped inside a ``Chain``)."""

    def __new__(cls, *, stage: str = "passthrough") -> Self: ...

@final
class GainKernel(Kernel):
    """Gain in dB; setting ``gain_db`` ramps linearly over ``ramp_ms``. Raises ``ConfigError``."""

    def __new__(
        cls, gain_db: float = 0.0, ramp_ms: float = 5.0, *, stage: str = "gain"
    ) -> Self: ...
    @property
    def gain_db(self) -> float: ...
    @gain_db.setter
    def gain_db(self, value: float) -> None: ...
    @property
    def ramp_ms(self) -> float: ...

@final
class ChannelMixKernel(Kernel):
    """Converts to ``channels`` (1..=64) channels: copy, duplicate mono, or average to mono."""

    def __new__(cls, channels: int, *, stage: str = "channel_mix") -> Self: ...
    @property
    def channels(self) -> int: ...

@final
class ResampleKernel(Kernel):
    """Streaming polyphase resampler to ``sample_rate`` Hz (1000..=384000)."""

    def __new__(cls, sample_rate: int, *, stage: str = "resample") -> Self: ...
    @property
    def sample_rate(self) -> int:
        """The output rate in Hz."""

    @property
    def input_rate(self) -> int | None:
        """The stream's input rate in Hz, ``None`` before its first block."""

    @property
    def latency_samples(self) -> int:
        """The filter delay in output samples, rounded (0 before a block or when in == out)."""

    @property
    def latency_seconds(self) -> float:
        """The filter delay in seconds."""

@final
class RebufferKernel(Kernel):
    """Re-cuts the stream into blocks of ``samples``, or ``frame_ms`` at the stream's rate."""

    def __new__(
        cls,
        samples: int | None = None,
        frame_ms: float | None = None,
        pad_final: bool = False,
        *,
        stage: str = "rebuffer",
    ) -> Self: ...
    @property
    def samples(self) -> int | None: ...
    @property
    def frame_ms(self) -> float | None: ...
    @property
    def pad_final(self) -> bool: ...

@final
class FormatConvertKernel:
    """Converts between PyAV sample formats ``fltp``, ``flt``, ``s16p`` and ``s16``."""

    def __new__(cls, format: str, *, stage: str = "format_convert") -> Self: ...
    def process(
        self, samples: npt.NDArray[np.float32] | npt.NDArray[np.int16], src_format: str
    ) -> npt.NDArray[np.float32] | npt.NDArray[np.int16]:
        """Converts ``samples`` (dtype and layout of ``src_format``) to ``format``."""

    @property
    def format(self) -> str:
        """The output sample format."""

    @property
    def stage(self) -> str:
        """The stage name errors carry."""

@final
class Chain:
    """Runs several kernels as one native call per block, with the GIL released."""

    def __new__(cls, kernels: list[Kernel]) -> Self: ...
    def process(self, samples: _Block, sample_rate: int) -> list[_Block]:
        """Runs one block through every kernel; errors name the kernel that raised."""

    def flush(self) -> list[_Block]:
        """Flushes each kernel in turn, pushing its tail through the kernels after it."""

    def reset(self) -> None:
        """Drops every kernel's stream state."""

    def output_rate(self, input_rate: int) -> int:
        """The sample rate (Hz) the chain emits for input at ``input_rate`` Hz."""

    def __len__(self) -> int: ...

def selftest_panic(message: str) -> None:
    """Panics inside the engine on purpose; raises ``stream.errors.EngineError``."""
