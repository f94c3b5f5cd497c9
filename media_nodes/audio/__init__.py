"""Built-in audio stages: each has a Rust kernel and a Python twin (docs/kernels.md)."""

from .aec3_kernel import Aec3Kernel
from .channel_mix import ChannelMix, ChannelMixKernel
from .denoise import Denoise, DenoiseKernel
from .echo_cancel import EchoCancel
from .echo_cancel_kernel import EchoCancelKernel
from .energy_vad import EnergyVAD, EnergyVADKernel
from .format_convert import FormatConvert, FormatConvertKernel
from .gain import Gain, GainKernel
from .level_meter import LevelMeter, LevelMeterKernel
from .mixer import Mixer, MixKernel
from .passthrough import PassThrough, PassThroughKernel
from .rebuffer import Rebuffer, RebufferKernel
from .resample import Resample, ResampleKernel
from .silero_vad import SileroVAD, SileroVADKernel

__all__ = [
    "Aec3Kernel",
    "ChannelMix",
    "ChannelMixKernel",
    "Denoise",
    "DenoiseKernel",
    "EchoCancel",
    "EchoCancelKernel",
    "EnergyVAD",
    "EnergyVADKernel",
    "FormatConvert",
    "FormatConvertKernel",
    "Gain",
    "GainKernel",
    "LevelMeter",
    "LevelMeterKernel",
    "MixKernel",
    "Mixer",
    "PassThrough",
    "PassThroughKernel",
    "Rebuffer",
    "RebufferKernel",
    "Resample",
    "ResampleKernel",
    "SileroVAD",
    "SileroVADKernel",
]
