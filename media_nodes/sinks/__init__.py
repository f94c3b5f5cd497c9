"""Sinks: stages that consume the stream; FileSink encodes it to a media file with PyAV."""

from .file import FileSink

__all__ = ["FileSink"]
