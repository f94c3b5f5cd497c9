"""The Python twins of the core's conversion kernels, and their settings.

Rate, channel count, sample format and framing conversion is core (``stream.audio_adapter``
builds on it), so these twins live here rather than beside their stages in
``media_nodes.audio``, which imports and re-exports them.
"""

from .channel_mix import ChannelMixKernel
from .format_convert import FormatConvertKernel
from .rebuffer import RebufferKernel
from .resample import ResampleKernel

__all__ = ["ChannelMixKernel", "FormatConvertKernel", "RebufferKernel", "ResampleKernel"]
