"""The Python twins of the core's conversion kernels, and their settings.

Rate, channel count, sample format and framing conversion is core (``stream.audio_adapter``
builds on it), and so is the G.711 codec (the telephony transport uses it), so these twins live
here rather than beside their stages in ``media_nodes.audio``, which imports and re-exports them.
"""

from .channel_mix import ChannelMixKernel
from .format_convert import FormatConvertKernel
from .g711 import G711Kernel
from .rebuffer import RebufferKernel
from .resample import ResampleKernel

__all__ = [
    "ChannelMixKernel",
    "FormatConvertKernel",
    "G711Kernel",
    "RebufferKernel",
    "ResampleKernel",
]
