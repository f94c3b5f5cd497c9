"""RemoteMedia's built-in stages: audio processors now; sources and sinks join them."""

from .audio import (
    ChannelMix,
    FormatConvert,
    Gain,
    PassThrough,
    Rebuffer,
    Resample,
)

__all__ = ["ChannelMix", "FormatConvert", "Gain", "PassThrough", "Rebuffer", "Resample"]
