"""WebRTC transport: the public names in one module.

``WebRTCServer(pipeline_factory, host, port, ...)`` serves a pipeline per peer connection (and
the browser page at ``/``); ``connect(url, source=..., sink=...)`` / ``Peer`` is the Python peer;
``serve_main(argv)`` / ``connect_main(argv)`` are the ``remotemedia serve`` / ``connect``
commands. See docs/webrtc.md.
"""

from __future__ import annotations

import warnings
from typing import Any

from ..audio_adapter import AudioAdapter
from ._aiortc import AdaptiveAudioJitterBuffer, resolve_host_addresses
from .cli import connect_main, serve_main
from .client import Peer, PeerResult, connect
from .server import WebRTCServer
from .session import Session, SessionOptions
from .tracks import AudioOutputTrack, VideoOutputTrack, track_frames


def __getattr__(name: str) -> Any:
    if name == "AudioConverter":  # its old name, before it moved to the core
        warnings.warn(
            "stream.transport.webrtc.AudioConverter is now stream.audio_adapter.AudioAdapter",
            DeprecationWarning,
            stacklevel=2,
        )
        return AudioAdapter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AdaptiveAudioJitterBuffer",
    "AudioAdapter",
    "AudioOutputTrack",
    "Peer",
    "PeerResult",
    "Session",
    "SessionOptions",
    "VideoOutputTrack",
    "WebRTCServer",
    "connect",
    "connect_main",
    "resolve_host_addresses",
    "serve_main",
    "track_frames",
]
