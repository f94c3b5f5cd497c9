"""Sources: generated test signals, and media files or URLs decoded with PyAV."""

from .file import FileSource
from .signals import NoiseSource, RealtimePacer, SilenceSource, ToneSource

__all__ = ["FileSource", "NoiseSource", "RealtimePacer", "SilenceSource", "ToneSource"]
