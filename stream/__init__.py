"""RemoteMedia: real-time audio and video pipelines with a Rust engine and Python twins.

>>> from stream import Pipeline, AudioFrame
>>> from media_nodes import ChannelMix, Resample, Gain
"""

from .engine import engine_available, engine_version
from .errors import (
    BackendUnavailable,
    ConfigError,
    EngineError,
    FormatError,
    NodeError,
    StreamError,
    TransportError,
)
from .events import Event
from .frames import AudioFrame, VideoFrame
from .kernel_node import KernelNode
from .node import Node, Source, StreamingNode
from .pipeline import DEFAULT_QUEUE_SIZE, Pipeline

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_QUEUE_SIZE",
    "AudioFrame",
    "BackendUnavailable",
    "ConfigError",
    "EngineError",
    "Event",
    "FormatError",
    "KernelNode",
    "Node",
    "NodeError",
    "Pipeline",
    "Source",
    "StreamError",
    "StreamingNode",
    "TransportError",
    "VideoFrame",
    "__version__",
    "engine_available",
    "engine_version",
]
