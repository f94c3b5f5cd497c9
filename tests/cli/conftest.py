"""tests/webrtc's test hosts and server fixtures (``hosts``, ``start_server``) and its
``webrtc`` marker, for tests/cli/test_connect_ws.py (``remotemedia connect ws://...``)."""

from __future__ import annotations

import pytest
from webrtc.conftest import hosts, start_server

__all__ = ["hosts", "start_server"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "webrtc: needs root and ip netns; runs a WebRTC server and peers on test hosts",
    )
