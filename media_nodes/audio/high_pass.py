"""HighPass: WebRTC's high-pass filter (hum, rumble and DC out of a voice channel).

The node ``HighPass``; its Rust kernel runs ``sonora`` (rust_engine/src/dsp/voice.rs);
the Python twin ``HighPassKernel`` WebRTC's C++ through livekit (voice_apm.py).
No settings: livekit's module takes only the on/off flag, so nothing else can be
honoured by both backends.
"""

from __future__ import annotations

from typing import ClassVar

from stream.kernel_node import KernelNode
from stream.stage_settings import Settings

from .voice_apm import ApmKernel

SETTINGS = Settings("HighPass")  # nothing to set (see the module docstring)


class HighPassKernel(ApmKernel):
    """Python twin of ``stream._engine.HighPassKernel``: livekit's module, only
    ``high_pass_filter`` on."""

    component: ClassVar[str] = "high_pass"
    flag: ClassVar[str] = "high_pass_filter"

    def __init__(self, *, stage: str = "high_pass") -> None:
        super().__init__(stage=stage)


class HighPass(KernelNode):
    """Remove hum, rumble and DC below the voice band with WebRTC's high-pass filter.

    The filter of a browser's audio processing module, full band: 68 dB off a 50 Hz hum at 8,
    16 and 32 kHz, 21 dB at 48 kHz (where the module runs at its 32 kHz processing rate), 0.4 dB
    off 1 kHz.

    8, 16, 32 or 48 kHz (put ``Resample`` before it otherwise), any channel count (each channel
    its own module). Output comes in whole 10 ms sub-frames, delayed by the kernel's
    ``latency_samples`` (per rate: docs/stages-audio.md); ``flush()`` emits the last partial one,
    so the stream keeps its sample count.
    """

    native_kernel = "HighPassKernel"
    python_kernel = HighPassKernel
    retimes = True
    settings = SETTINGS

    def __init__(self, *, name: str | None = None, backend: str | None = None) -> None:
        super().__init__(name=name, backend=backend)
        self.configure()

    @property
    def latency_samples(self) -> int:
        """Delay of the output in samples, from the kernel (after its first block)."""
        return int(self._kernel.latency_samples)


__all__ = ["SETTINGS", "HighPass", "HighPassKernel"]
