"""WebRTC transport: the public names in one module.

``WebRTCServer(pipeline_factory, host, port, ...)`` serves a pipeline per peer connection (and
the browser page at ``/``); ``connect(url, source=..., sink=...)`` / ``Peer`` is the Python peer;
``serve_main(argv)`` / ``connect_main(argv)`` are the ``remotemedia serve`` / ``connect``
commands. See docs/webrtc.md.
"""

from __future__ import annotations

from ._aiortc import AdaptiveAudioJitterBuffer, resolve_host_addresses
from .cli import connect_main, serve_main
from .client import Peer, PeerResult, connect
from .server import WebRTCServer
from .session import Session, SessionOptions
from .tracks import AudioConverter, AudioOutputTrack, VideoOutputTrack, track_frames

__all__ = [
    "AdaptiveAudioJitterBuffer",
    "AudioConverter",
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
