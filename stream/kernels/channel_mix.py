"""ChannelMixKernel, the Python twin of ChannelMix, and its SETTINGS.

Up-mixes mono to any channel count, down-mixes any count to mono.
"""

from __future__ import annotations

import numpy as np

from ..errors import FormatError
from ..kernel import Block, PyKernel
from ..stage_settings import Setting, Settings, int_in

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


__all__ = ["SETTINGS", "ChannelMixKernel"]
