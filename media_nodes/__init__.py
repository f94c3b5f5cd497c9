"""RemoteMedia's built-in stages: audio and video processors, sources and sinks, live devices."""

from .audio import (
    AutoGain,
    ChannelMix,
    Denoise,
    EchoCancel,
    EnergyVAD,
    FormatConvert,
    Gain,
    HighPass,
    LevelMeter,
    Mixer,
    NoiseSuppress,
    PassThrough,
    Rebuffer,
    Resample,
    SileroVAD,
    VoiceProcessor,
)
from .devices import MicrophoneSource, SpeakerSink, list_devices
from .sinks import FileSink
from .sources import FileSource, NoiseSource, SilenceSource, ToneSource
from .video import ColorConvert, FrameRate, Grayscale, Resize

__all__ = [
    "AutoGain",
    "ChannelMix",
    "ColorConvert",
    "Denoise",
    "EchoCancel",
    "EnergyVAD",
    "FileSink",
    "FileSource",
    "FormatConvert",
    "FrameRate",
    "Gain",
    "Grayscale",
    "HighPass",
    "LevelMeter",
    "MicrophoneSource",
    "Mixer",
    "NoiseSource",
    "NoiseSuppress",
    "PassThrough",
    "Rebuffer",
    "Resample",
    "Resize",
    "SilenceSource",
    "SileroVAD",
    "SpeakerSink",
    "ToneSource",
    "VoiceProcessor",
    "list_devices",
]
