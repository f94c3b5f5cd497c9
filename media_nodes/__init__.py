"""RemoteMedia's built-in stages: audio processors, sources and sinks."""

from .audio import (
    ChannelMix,
    FormatConvert,
    Gain,
    PassThrough,
    Rebuffer,
    Resample,
)
from .sinks import FileSink
from .sources import FileSource, NoiseSource, SilenceSource, ToneSource

__all__ = [
    "ChannelMix",
    "FileSink",
    "FileSource",
    "FormatConvert",
    "Gain",
    "NoiseSource",
    "PassThrough",
    "Rebuffer",
    "Resample",
    "SilenceSource",
    "ToneSource",
]
