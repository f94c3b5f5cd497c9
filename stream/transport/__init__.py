"""Network transports. ``stream.transport.webrtc``: browsers and Python peers over WebRTC.

This package is the only place that imports aiortc and aiohttp (``pip install aiortc aiohttp``);
``import stream`` does not load it.
"""
