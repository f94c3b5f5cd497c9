"""ChannelMix: up-mix mono to any channel count, down-mix any count to mono."""

from __future__ import annotations

import numpy as np

from stream.errors import FormatError
from stream.kernel import Block, PyKernel
from stream.kernel_node import KernelNode
from stream.stage_settings import Setting, Settings, int_in

SETTINGS = Settings(
    "ChannelMix",
    Setting(
        "channels",
        "int",
        check=int_in("channels", 1, 64, "an int in 1..=64"),
        doc="output channel count",
    ),
)


class ChannelMixKernel(PyKernel):
    """Python twin of ``stream._engine.ChannelMixKernel`` (docs/kernels.md)."""

    def __init__(self, channels: int, *, stage: str = "channel_mix") -> None:
        super().__init__(stage=stage)
        self.channels: int = SETTINGS.validate(stage, {"channels": channels}, kernel=True)[
            "channels"
        ]

    def _process(self, block: Block, rate: int) -> list[Block]:
        have = block.shape[0]
        if have == self.channels:
            return [block.copy()]
        if have == 1:
            return [np.repeat(block, self.channels, axis=0)]
        if self.channels == 1:
            total = block.sum(axis=0, dtype=np.float32, keepdims=True)
            return [total * np.float32(1.0 / have)]
        raise self.error(
            FormatError,
            f"cannot mix {have} channels to {self.channels}; "
            "supported: mono to any, any to mono, or the same count",
        )


class ChannelMix(KernelNode):
    """Mix to ``channels`` channels: mono is copied to each; several average down to mono."""

    native_kernel = "ChannelMixKernel"
    python_kernel = ChannelMixKernel
    settings = SETTINGS
    channels: int

    def __init__(self, channels: int, *, name: str | None = None, backend: str | None = None):
        super().__init__(name=name, backend=backend)
        self.configure(channels=channels)
