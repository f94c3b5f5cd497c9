"""Built-in audio stages: each has a Rust kernel and a Python twin (docs/kernels.md)."""

from .channel_mix import ChannelMix, ChannelMixKernel
from .format_convert import FormatConvert, FormatConvertKernel
from .gain import Gain, GainKernel
from .passthrough import PassThrough, PassThroughKernel
from .rebuffer import Rebuffer, RebufferKernel
from .resample import Resample, ResampleKernel

__all__ = [
    "ChannelMix",
    "ChannelMixKernel",
    "FormatConvert",
    "FormatConvertKernel",
    "Gain",
    "GainKernel",
    "PassThrough",
    "PassThroughKernel",
    "Rebuffer",
    "RebufferKernel",
    "Resample",
    "ResampleKernel",
]
