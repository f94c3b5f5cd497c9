"""AutoGain: WebRTC's AGC2 (adaptive digital gain and limiter), a browser's ``autoGainControl``.

The node ``AutoGain``; its Rust kernel runs ``sonora`` (rust_engine/src/dsp/voice.rs);
the Python twin ``AutoGainKernel`` WebRTC's C++ through livekit (voice_apm.py).
No settings: livekit's module takes only the on/off flag, so nothing else can be
honoured by both backends.
"""

from __future__ import annotations

from typing import ClassVar

from stream.kernel_node import KernelNode
from stream.stage_settings import Settings

from .voice_apm import ApmKernel

SETTINGS = Settings("AutoGain")  # nothing to set (see the module docstring)


class AutoGainKernel(ApmKernel):
    """Python twin of ``stream._engine.AutoGainKernel``: livekit's module, only
    ``auto_gain_control`` on."""

    component: ClassVar[str] = "auto_gain"
    flag: ClassVar[str] = "auto_gain_control"

    def __init__(self, *, stage: str = "auto_gain") -> None:
        super().__init__(stage=stage)


class AutoGain(KernelNode):
    """Bring a talker to a steady level with WebRTC's AGC2: adaptive digital gain and a limiter.

    AGC2 with the module's defaults: the gain starts at 15 dB and moves at most 6 dB/s, only
    while the module's voice detector hears speech (so it does not pump on pauses), up to 50 dB,
    towards a speech level 5 dB under full scale, keeping noise under -50 dBFS; the limiter keeps
    peaks inside full scale.

    8, 16, 32 or 48 kHz (put ``Resample`` before it otherwise), any channel count (each channel
    its own module). Output comes in whole 10 ms sub-frames, delayed by the kernel's
    ``latency_samples`` (per rate: docs/stages-audio.md); ``flush()`` emits the last partial one,
    so the stream keeps its sample count.
    """

    native_kernel = "AutoGainKernel"
    python_kernel = AutoGainKernel
    retimes = True
    settings = SETTINGS

    def __init__(self, *, name: str | None = None, backend: str | None = None) -> None:
        super().__init__(name=name, backend=backend)
        self.configure()

    @property
    def latency_samples(self) -> int:
        """Delay of the output in samples, from the kernel (after its first block)."""
        return int(self._kernel.latency_samples)


__all__ = ["SETTINGS", "AutoGain", "AutoGainKernel"]
