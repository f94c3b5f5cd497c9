"""Many peers: separate pipelines without crosstalk, nothing left behind, limits and auth."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stream.errors import TransportError
from stream.testing import split_frames, tone

from .conftest import REPO, manifest
from .signals import active, band_share, dominant_hz, joined, rms_db

pytest.importorskip("aiortc", reason="aiortc is not installed (.ci/install-webrtc.sh)")
pytestmark = pytest.mark.webrtc

from stream.transport.webrtc import Peer, connect  # noqa: E402

GAIN = [{"type": "Gain", "name": "gain", "params": {"gain_db": 0}}]
TONE_DB = 20 * np.log10(0.5 / np.sqrt(2))


def test_concurrent_sessions_have_their_own_pipelines(
    hosts: Any, start_server: Any, tmp_path: Path
) -> None:
    server = start_server("--pipeline", manifest(tmp_path, GAIN))
    plan = [(300.0, -3.0), (700.0, -9.0), (1100.0, -15.0), (1900.0, -21.0)]

    async def one(hz: float, gain_db: float) -> list[Any]:
        received: list[Any] = []
        frames = split_frames(tone(hz, 2.5, 48000, amplitude=0.5), 48000, 960)
        control = [{"type": "set", "stage": "gain", "param": "gain_db", "value": gain_db}]
        await connect(server.url, frames, received, control=control)
        return received

    async def run() -> list[list[Any]]:
        return list(await asyncio.gather(*(one(hz, g) for hz, g in plan)))

    results = hosts.run_async("client", run)
    for (hz, gain_db), received in zip(plan, results, strict=True):
        x = active(joined(received))[-72000:-12000]  # the last 1.25 s, after the gain was set
        assert dominant_hz(x) == pytest.approx(hz, abs=2)
        assert band_share(x, hz) > 0.99, f"{hz} Hz session hears other sessions"
        for other, _ in plan:
            if other != hz:
                assert band_share(x, other) < 1e-4
        assert rms_db(x) == pytest.approx(TONE_DB + gain_db, abs=0.7)
    status = server.wait_for(lambda s: s["sessions"] == 0)
    assert status["sessions_total"] == len(plan)


def _connect_command(server: Any, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "stream.transport", "connect", server.url, "--tone", "500", *extra,
    ]  # fmt: skip


def test_vanished_peer_leaves_nothing_behind(hosts: Any, start_server: Any, tmp_path: Path) -> None:
    server = start_server("--pipeline", manifest(tmp_path, GAIN), "--idle-timeout", "1.5")
    # one exchange first, so lazily created resources (executor threads) are in the baseline
    hosts.run_async("client", lambda: connect(server.url, split_frames(tone(440, 0.5), 48000), []))
    baseline = server.wait_for(lambda s: s["sessions"] == 0 and s["counts"]["pipelines"] == 0)
    peers = [
        hosts.popen("client", _connect_command(server, "--seconds", "60"), cwd=REPO)
        for _ in range(3)
    ]
    server.wait_for(
        lambda s: s["sessions"] == 3 and all(x["frames_in"] > 25 for x in s["list"]), timeout=30
    )
    busy = server.status()
    assert busy["counts"]["pipelines"] == 3
    assert busy["counts"]["tracks"] >= 3
    for peer in peers:
        peer.send_signal(signal.SIGKILL)  # vanishes: no goodbye, no DTLS close
        peer.wait(10)
    started = time.monotonic()
    after = server.wait_for(lambda s: s["sessions"] == 0, timeout=15)
    assert time.monotonic() - started < 6  # idle timeout 1.5 s plus the watchdog's period
    after = server.wait_for(
        lambda s: (
            s["counts"]["pipelines"] == 0
            and s["counts"]["tracks"] == 0
            and s["counts"]["peer_connections"] == 0
        ),
        timeout=10,
    )
    counts = (baseline["counts"], after["counts"])
    assert after["counts"]["tasks"] <= baseline["counts"]["tasks"], counts
    assert after["counts"]["media_threads"] == 0, counts
    assert any("no media for 1.5 s" in line for line in server.lines), server.log()


def _offer_sdp(hosts: Any) -> str:
    async def make() -> str:
        from aiortc import RTCPeerConnection

        pc = RTCPeerConnection()
        pc.addTransceiver("audio")
        await pc.setLocalDescription(await pc.createOffer())
        assert pc.localDescription is not None
        sdp = str(pc.localDescription.sdp)
        await pc.close()
        return sdp

    result: str = hosts.run_async("client", make)
    return result


def test_bad_offers_get_4xx(hosts: Any, start_server: Any, tmp_path: Path) -> None:
    server = start_server("--max-offer-bytes", "8192")
    sdp = _offer_sdp(hosts)
    json_type = {"Content-Type": "application/json"}

    def offer(sdp: str, kind: str = "offer") -> bytes:
        return json.dumps({"sdp": sdp, "type": kind}).encode()

    cases = [
        (b"this is not json", 400),
        (b"[1, 2, 3]", 400),
        (json.dumps({"type": "offer"}).encode(), 400),
        (offer(sdp, "answer"), 400),
        (offer("v=0\r\nm=audio nonsense\r\n"), 400),
        (offer(sdp.replace("a=fingerprint", "a=fingerprnt")), 400),
        (offer(sdp.replace("a=ice-ufrag", "a=ice-ufrog")), 400),
        (offer(sdp + "a=x:" + "y" * 9000 + "\r\n"), 413),
    ]
    for body, expected in cases:
        code, data = server.http("POST", "/offer", body, json_type)
        assert code == expected, (body[:80], code, data)
        assert "error" in data
    status = server.status()
    assert status["sessions"] == 0 and status["counts"]["pipelines"] == 0
    assert status["rejected"] == {"400": 7, "413": 1}
    assert server.proc.poll() is None  # still serving


def test_token_and_session_limit(hosts: Any, start_server: Any, tmp_path: Path) -> None:
    server = start_server("--token", "s3cret", "--max-sessions", "1")
    code, _ = server.http("GET", "/status")
    assert code == 401
    code, _ = server.http("GET", "/status", headers={"Authorization": "Bearer wrong"})
    assert code == 401
    assert server.status(token="s3cret")["sessions"] == 0
    code, _ = server.http("GET", "/")  # the page itself is public
    assert code == 200

    async def run() -> tuple[str, str]:
        frames = split_frames(tone(440, 1.0), 48000, 960)
        with pytest.raises(TransportError) as unauthorized:
            await connect(server.url, frames, [])
        async with Peer(server.url, frames, [], token="s3cret") as first:
            with pytest.raises(TransportError) as full:
                await connect(server.url, frames, [], token="s3cret")
            await first.wait_sent(10)
        return str(unauthorized.value), str(full.value)

    unauthorized, full = hosts.run_async("client", run)
    assert "HTTP 401" in unauthorized
    assert "HTTP 503" in full and "1 sessions" in full


def test_graceful_shutdown_closes_peers_and_finalizes_sinks(
    hosts: Any, start_server: Any, tmp_path: Path
) -> None:
    record = tmp_path / "record"
    server = start_server("--pipeline", manifest(tmp_path, GAIN), "--record", str(record))
    peer = hosts.popen("client", _connect_command(server, "--seconds", "60"), cwd=REPO)
    try:
        server.wait_for(lambda s: s["sessions"] == 1 and s["list"][0]["frames_in"] > 50)
        started = time.monotonic()
        assert server.stop() == 0, server.log()
        assert time.monotonic() - started < 10
        assert peer.wait(20) == 0  # the peer saw the connection close and ended cleanly
    finally:
        if peer.poll() is None:
            peer.kill()
            peer.wait(5)
    files = list(record.glob("*.wav"))
    assert len(files) == 1
    import wave

    with wave.open(str(files[0]), "rb") as w:  # a finalized header: length matches the data
        frames = w.getnframes()
        x = np.frombuffer(w.readframes(frames), "<i2").astype(np.float64) / 32768
    assert frames > 48000
    assert dominant_hz(active(x)[4800:]) == pytest.approx(500, abs=2)
