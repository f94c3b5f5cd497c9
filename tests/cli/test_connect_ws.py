"""``remotemedia connect ws://HOST:PORT/ws`` against a ``serve --calls`` process: the command a
user runs on the client test host, checked by its output file, its JSON summary and exit code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("aiohttp", reason="aiohttp is not installed (.ci/install-webrtc.sh)")
pytestmark = pytest.mark.webrtc

from webrtc.conftest import REPO, manifest  # noqa: E402
from webrtc.signals import active, band_share, dominant_hz, rms_db  # noqa: E402

TONE_HZ = 440
TONE_DB = 20 * np.log10(0.5 / np.sqrt(2))  # ToneSource's default amplitude, 0.5
GAIN = [{"type": "Gain", "name": "gain", "params": {"gain_db": -6}}]
RATE = 16000  # connect_ws's hello rate


def connect_command(url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "stream", "connect", url, *args]


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    import av

    with av.open(str(path)) as container:
        rate = container.streams.audio[0].rate
        blocks = [f.to_ndarray() for f in container.decode(audio=0)]
    x = np.concatenate(blocks, axis=1)[0].astype(np.float64)
    return (x / 32768.0 if np.abs(x).max() > 2 else x), rate


def test_tone_round_trip(hosts: Any, start_server: Any, tmp_path: Path) -> None:
    server = start_server("--pipeline", manifest(tmp_path, GAIN), "--calls", "--token", "t0k")
    url = server.url.replace("http://", "ws://") + "ws"
    out = tmp_path / "back.wav"
    done = hosts.run(
        "client",
        connect_command(url, "--tone", str(TONE_HZ), "--seconds", "3", "--token", "t0k",
                        "--out", str(out), "--json"),
        capture_output=True, text=True, timeout=90, cwd=REPO, env=environment(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["complete"] and summary["ended_by"] == "client", summary
    assert summary["close_reason"] == "caller stopped the stream"
    assert summary["frames_sent"] == 150  # 3 s of 20 ms frames
    x, rate = read_audio(out)
    assert rate == RATE
    # all of the tone came back: the playout buffer may add concealment, never lose audio
    assert len(x) >= 3 * RATE and summary["audio_seconds_received"] >= 3.0
    steady = active(x)[RATE // 2 : 5 * RATE // 2]  # 2 s from the middle of the tone
    assert len(steady) == 2 * RATE
    assert dominant_hz(steady, RATE) == pytest.approx(TONE_HZ, abs=2)
    assert band_share(steady, TONE_HZ, RATE) > 0.99
    assert rms_db(steady) == pytest.approx(TONE_DB - 6, abs=0.5)
    status = server.wait_for(lambda s: s["calls"]["calls"] == 0, token="t0k")
    assert status["calls"]["calls_total"] == 1


def test_refused_token_exits_non_zero(hosts: Any, start_server: Any, tmp_path: Path) -> None:
    server = start_server("--calls", "--token", "t0k")
    url = server.url.replace("http://", "ws://") + "ws"
    for token in ("wrong", None):
        done = hosts.run(
            "client",
            connect_command(url, "--tone", "440", "--seconds", "1",
                            *(["--token", token] if token else [])),
            capture_output=True, text=True, timeout=60, cwd=REPO,
            env={k: v for k, v in environment().items() if k != "REMOTEMEDIA_TOKEN"},
        )  # fmt: skip
        assert done.returncode == 1, (token, done.stdout, done.stderr)
        assert "refused" in done.stderr and "403" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    status = server.status("t0k")
    assert status["calls"]["calls_total"] == 0


def test_call_ended_by_the_server_exits_non_zero(
    hosts: Any, start_server: Any, tmp_path: Path
) -> None:
    """A server that stops mid-call loses the rest of the tone: the command says so, exit 1."""
    server = start_server("--calls")
    url = server.url.replace("http://", "ws://") + "ws"
    peer = hosts.popen(
        "client",
        connect_command(url, "--tone", "440", "--seconds", "60", "--json"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=environment(),
    )  # fmt: skip
    try:
        server.wait_for(
            lambda s: s["calls"]["calls"] == 1 and s["calls"]["list"][0]["frames_in"] > 10,
            timeout=30,
        )
        server.proc.send_signal(signal.SIGTERM)  # drain timeout 0: the call is closed now
        stdout, stderr = peer.communicate(timeout=30)
    finally:
        if peer.poll() is None:
            peer.kill()
    assert peer.returncode == 1, (stdout, stderr)
    summary = json.loads(stdout)
    assert summary["ended_by"] == "server" and not summary["complete"], summary
    assert summary["frames_sent"] < 60 * 50
    assert "the server ended the call" in stderr, stderr


def test_set_is_refused_for_ws(tmp_path: Path) -> None:
    done = subprocess.run(
        connect_command("ws://127.0.0.1:9/ws", "--tone", "440", "--set", "gain.gain_db=-6"),
        capture_output=True, text=True, timeout=60, cwd=REPO, env=environment(),
    )  # fmt: skip
    assert done.returncode == 2 and "no control channel" in done.stderr, done.stderr
