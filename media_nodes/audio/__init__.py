"""Built-in audio stages: each has a Rust kernel and a Python twin (docs/kernels.md)."""

from .aec3_kernel import Aec3Kernel
from .auto_gain import AutoGain, AutoGainKernel
from .channel_mix import ChannelMix, ChannelMixKernel
from .denoise import Denoise, DenoiseKernel
from .echo_cancel import EchoCancel
from .echo_cancel_kernel import EchoCancelKernel
from .energy_vad import EnergyVAD, EnergyVADKernel
from .format_convert import FormatConvert, FormatConvertKernel
from .g711 import G711Decode, G711Encode, G711Frame, G711Kernel
from .gain import Gain, GainKernel
from .high_pass import HighPass, HighPassKernel
from .kalman_kernel import KalmanAecKernel
from .level_meter import LevelMeter, LevelMeterKernel
from .mixer import Mixer, MixKernel
from .noise_suppress import NoiseSuppress, NoiseSuppressKernel
from .passthrough import PassThrough, PassThroughKernel
from .rebuffer import Rebuffer, RebufferKernel
from .resample import Resample, ResampleKernel
from .silero_vad import SileroVAD, SileroVADKernel
from .voice_processor import VoiceProcessor

__all__ = [
    "Aec3Kernel",
    "AutoGain",
    "AutoGainKernel",
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
    "G711Decode",
    "G711Encode",
    "G711Frame",
    "G711Kernel",
    "Gain",
    "GainKernel",
    "HighPass",
    "HighPassKernel",
    "KalmanAecKernel",
    "LevelMeter",
    "LevelMeterKernel",
    "MixKernel",
    "Mixer",
    "NoiseSuppress",
    "NoiseSuppressKernel",
    "PassThrough",
    "PassThroughKernel",
    "Rebuffer",
    "RebufferKernel",
    "Resample",
    "ResampleKernel",
    "SileroVAD",
    "SileroVADKernel",
    "VoiceProcessor",
]
