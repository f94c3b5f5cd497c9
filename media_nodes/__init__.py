"""RemoteMedia's built-in stages: audio and video processors, sources and sinks, live devices."""

from .audio import (
    ChannelMix,
    Denoise,
    EchoCancel,
    EnergyVAD,
    FormatConvert,
    Gain,
    LevelMeter,
    Mixer,
    PassThrough,
    Rebuffer,
    Resample,
    SileroVAD,
)
from .devices import MicrophoneSource, SpeakerSink, list_devices
from .sinks import FileSink
from .sources import FileSource, NoiseSource, SilenceSource, ToneSource
from .video import ColorConvert, FrameRate, Grayscale, Resize

__all__ = [
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
    "LevelMeter",
    "MicrophoneSource",
    "Mixer",
    "NoiseSource",
    "PassThrough",
    "Rebuffer",
    "Resample",
    "Resize",
    "SilenceSource",
    "SileroVAD",
    "SpeakerSink",
    "ToneSource",
    "list_devices",
]
