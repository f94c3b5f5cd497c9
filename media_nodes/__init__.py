"""RemoteMedia's built-in stages: audio processors, sources and sinks, live devices."""

from .audio import (
    ChannelMix,
    EnergyVAD,
    FormatConvert,
    Gain,
    LevelMeter,
    Mixer,
    PassThrough,
    Rebuffer,
    Resample,
)
from .devices import MicrophoneSource, SpeakerSink, list_devices
from .sinks import FileSink
from .sources import FileSource, NoiseSource, SilenceSource, ToneSource

__all__ = [
    "ChannelMix",
    "EnergyVAD",
    "FileSink",
    "FileSource",
    "FormatConvert",
    "Gain",
    "LevelMeter",
    "MicrophoneSource",
    "Mixer",
    "NoiseSource",
    "PassThrough",
    "Rebuffer",
    "Resample",
    "SilenceSource",
    "SpeakerSink",
    "ToneSource",
    "list_devices",
]
