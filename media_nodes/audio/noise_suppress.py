"""NoiseSuppress: WebRTC's noise suppressor, a browser's ``noiseSuppression``, server-side.

The node ``NoiseSuppress``; its Rust kernel runs ``sonora`` (rust_engine/src/dsp/voice.rs);
the Python twin ``NoiseSuppressKernel`` WebRTC's C++ through livekit (voice_apm.py).
No settings: livekit's module takes only the on/off flag, so nothing else can be
honoured by both backends.
"""

from __future__ import annotations

from typing import ClassVar

from stream.kernel_node import KernelNode
from stream.stage_settings import Settings

from .voice_apm import ApmKernel

SETTINGS = Settings("NoiseSuppress")  # nothing to set (see the module docstring)


class NoiseSuppressKernel(ApmKernel):
    """Python twin of ``stream._engine.NoiseSuppressKernel``: livekit's module, only
    ``noise_suppression`` on."""

    component: ClassVar[str] = "noise_suppress"
    flag: ClassVar[str] = "noise_suppression"

    def __init__(self, *, stage: str = "noise_suppress") -> None:
        super().__init__(stage=stage)


class NoiseSuppress(KernelNode):
    """Suppress stationary background noise with WebRTC's noise suppressor.

    The suppressor of a browser's audio processing module at its default level (moderate:
    11-14 dB off stationary noise, speech kept within a dB).

    8, 16, 32 or 48 kHz (put ``Resample`` before it otherwise), any channel count (each channel
    its own module). Output comes in whole 10 ms sub-frames, delayed by the kernel's
    ``latency_samples`` (per rate: docs/stages-audio.md); ``flush()`` emits the last partial one,
    so the stream keeps its sample count.
    """

    native_kernel = "NoiseSuppressKernel"
    python_kernel = NoiseSuppressKernel
    retimes = True
    settings = SETTINGS

    def __init__(self, *, name: str | None = None, backend: str | None = None) -> None:
        super().__init__(name=name, backend=backend)
        self.configure()

    @property
    def latency_samples(self) -> int:
        """Delay of the output in samples, from the kernel (after its first block)."""
        return int(self._kernel.latency_samples)


__all__ = ["SETTINGS", "NoiseSuppress", "NoiseSuppressKernel"]
