"""ChannelMix: up-mix mono to any channel count, down-mix any count to mono.

The kernel's Python twin and the settings are core: ``stream.kernels.channel_mix`` (re-exported
here).
"""

from __future__ import annotations

from stream.kernel_node import KernelNode
from stream.kernels.channel_mix import SETTINGS, ChannelMixKernel


class ChannelMix(KernelNode):
    """Mix to ``channels`` channels: mono is copied to each; several average down to mono."""

    native_kernel = "ChannelMixKernel"
    python_kernel = ChannelMixKernel
    settings = SETTINGS
    channels: int

    def __init__(self, channels: int, *, name: str | None = None, backend: str | None = None):
        super().__init__(name=name, backend=backend)
        self.configure(channels=channels)


__all__ = ["SETTINGS", "ChannelMix", "ChannelMixKernel"]
