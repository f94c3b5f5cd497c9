"""``remotemedia serve --calls``: a Twilio Media Streams call to the served pipeline, from the
client test host, through the real server process (routes, settings and CLI wired together)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stream.testing import tone

from .conftest import manifest

pytest.importorskip("aiohttp", reason="aiohttp is not installed (.ci/install-webrtc.sh)")
pytestmark = pytest.mark.webrtc

from telephony.callers import RATE, twilio_call  # noqa: E402

GAIN = [{"type": "Gain", "name": "gain", "params": {"gain_db": -6}}]


def db(x: Any) -> float:
    return float(10 * np.log10(np.mean(np.square(np.asarray(x, np.float64))) + 1e-20))


def test_served_twilio_call(hosts: Any, start_server: Any, tmp_path: Path) -> None:
    server = start_server("--pipeline", manifest(tmp_path, GAIN), "--calls", "--token", "t0k")
    ws_url = server.url.replace("http://", "ws://").rstrip("/")
    x = tone(440, 2.0, RATE, amplitude=0.5)[0]
    got = hosts.run_async("client", lambda: twilio_call(f"{ws_url}/twilio", x))
    y = got.audio()
    steady = y[int(0.3 * RATE) : int(1.6 * RATE)]
    assert abs(db(steady) - (db(x) - 6)) < 0.5
    status = server.wait_for(lambda s: s["calls"]["calls"] == 0, token="t0k")
    assert status["calls"]["calls_total"] == 1
    # /metrics carries the calls: counts and what the playout buffer did with their audio
    code, body = server.http("GET", "/metrics", headers={"Authorization": "Bearer t0k"})
    assert code == 200
    metrics = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in body["text"].splitlines()
        if line and not line.startswith("#")
    }
    assert metrics["remotemedia_calls_started_total"] == 1
    assert metrics["remotemedia_calls_active"] == 0
    assert metrics['remotemedia_call_playout_frames_total{kind="frames"}'] >= 50
    # /ws needs the server's token like /offer does
    refused = hosts.run_async("client", lambda: twilio_call(f"{ws_url}/ws", x))
    assert refused.handshake_status == 403
