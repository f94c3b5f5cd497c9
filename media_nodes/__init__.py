"""RemoteMedia's built-in stages: audio processors, sources and sinks, live devices."""

from .audio import (
    ChannelMix,
    FormatConvert,
    Gain,
    PassThrough,
    Rebuffer,
    Resample,
)
from .devices import MicrophoneSource, SpeakerSink, list_devices
from .sinks import FileSink
from .sources import FileSource, NoiseSource, SilenceSource, ToneSource

__all__ = [
    "ChannelMix",
    "FileSink",
    "FileSource",
    "FormatConvert",
    "Gain",
    "MicrophoneSource",
    "NoiseSource",
    "PassThrough",
    "Rebuffer",
    "Resample",
    "SilenceSource",
    "SpeakerSink",
    "ToneSource",
    "list_devices",
]
