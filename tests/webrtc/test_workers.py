"""Sessions spread over worker processes (``serve --workers N``): placement, death, shutdown."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stream.testing import split_frames, tone

from .conftest import REPO, manifest
from .signals import active, band_share, dominant_hz, joined, rms_db

pytest.importorskip("aiortc", reason="aiortc is not installed (.ci/install-webrtc.sh)")
pytestmark = pytest.mark.webrtc

from stream.transport.webrtc import Peer, connect  # noqa: E402

GAIN = [{"type": "Gain", "name": "gain", "params": {"gain_db": 0}}]
TONE_DB = 20 * np.log10(0.5 / np.sqrt(2))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (not yet reaped) is gone for our purposes
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[-1][:1] != "Z"


async def _status(url: str) -> dict[str, Any]:
    import aiohttp

    async with aiohttp.ClientSession() as http, http.get(url.rstrip("/") + "/status") as resp:
        data: dict[str, Any] = await resp.json()
        return data


async def _status_when(
    url: str, ok: Callable[[dict[str, Any]], bool], timeout: float = 30.0
) -> dict[str, Any]:
    """The first ``/status`` that ``ok`` accepts (polled; a loaded machine may take a while)."""
    async with asyncio.timeout(timeout):
        while not ok(status := await _status(url)):
            await asyncio.sleep(0.1)
    return status


def _placed(status: dict[str, Any]) -> set[str]:
    return {s["session"] for s in status["list"]}


def test_sessions_on_two_workers_get_their_tone_back(
    hosts: Any, start_server: Any, tmp_path: Path
) -> None:
    server = start_server("--pipeline", manifest(tmp_path, GAIN), "--workers", "2")
    plan = [(300.0, -3.0), (700.0, -9.0), (1100.0, -15.0), (1900.0, -21.0)]
    busy: dict[str, Any] = {}

    async def one(hz: float, gain_db: float) -> list[Any]:
        received: list[Any] = []
        frames = split_frames(tone(hz, 3.0, 48000, amplitude=0.5), 48000, 960)
        control = [{"type": "set", "stage": "gain", "param": "gain_db", "value": gain_db}]
        await connect(server.url, frames, received, control=control)
        return received

    async def look() -> None:
        busy.update(await _status_when(server.url, lambda s: s["sessions"] == len(plan)))

    async def run() -> list[list[Any]]:
        results = await asyncio.gather(*(one(hz, g) for hz, g in plan), look())
        return list(results[: len(plan)])

    results = hosts.run_async("client", run)
    for (hz, gain_db), received in zip(plan, results, strict=True):
        x = active(joined(received))[-72000:-12000]
        assert dominant_hz(x) == pytest.approx(hz, abs=2)
        assert band_share(x, hz) > 0.99, f"{hz} Hz session hears other sessions"
        assert rms_db(x) == pytest.approx(TONE_DB + gain_db, abs=0.7)
    # placement: least sessions first, so 2 + 2, and the front itself holds no session
    assert busy["sessions"] == 4, busy
    assert sorted(w["sessions"] for w in busy["workers"]) == [2, 2], busy["workers"]
    assert {s["worker"] for s in busy["list"]} == {0, 1}
    assert busy["counts"]["pipelines"] == 4 and busy["counts"]["peer_connections"] == 4
    pids = {w["pid"] for w in busy["workers"]}
    assert len(pids) == 2 and server.proc.pid not in pids
    idle = server.wait_for(lambda s: s["sessions"] == 0 and s["counts"]["pipelines"] == 0)
    assert idle["counts"]["tracks"] == 0 and idle["counts"]["peer_connections"] == 0
    assert idle["sessions_total"] == len(plan)


def test_a_dead_worker_ends_its_sessions_and_new_ones_go_elsewhere(
    hosts: Any, start_server: Any, tmp_path: Path
) -> None:
    server = start_server("--pipeline", manifest(tmp_path, GAIN), "--workers", "2")
    before = server.status()
    pids = {w["index"]: w["pid"] for w in before["workers"]}

    async def run() -> dict[str, Any]:
        sinks: list[list[Any]] = [[], []]
        peers = [
            Peer(server.url, split_frames(tone(hz, 30, 48000, amplitude=0.5), 48000), sink)
            for hz, sink in zip((440.0, 880.0), sinks, strict=True)
        ]
        for peer in peers:
            await peer.start()
        status = await _status_when(
            server.url, lambda s: {p.result.session for p in peers} <= _placed(s)
        )
        where = {s["session"]: s["worker"] for s in status["list"]}
        victim_peer = peers[0]
        victim = where[victim_peer.result.session]
        os.kill(pids[victim], signal.SIGKILL)
        after_kill = await _status_when(server.url, lambda s: s["sessions"] == 1)
        counts = [len(s) for s in sinks]
        await asyncio.sleep(1.5)
        grown = [len(s) - c for s, c in zip(sinks, counts, strict=True)]
        # a new session works while one worker is gone or restarting
        fresh: list[Any] = []
        frames = split_frames(tone(1300, 2.0, 48000, amplitude=0.5), 48000, 960)
        await connect(server.url, frames, fresh)
        later = await _status(server.url)
        for peer in peers:
            await peer.close()
        return {
            "victim": victim,
            "after_kill": after_kill,
            "grown": grown,
            "fresh": fresh,
            "later": later,
        }

    out = hosts.run_async("client", run)
    victim = out["victim"]
    after = out["after_kill"]
    assert after["sessions"] == 1, after  # the front dropped the dead worker's session
    assert not _alive(pids[victim])
    assert out["grown"][0] == 0, "the peer of the dead worker still receives audio"
    assert out["grown"][1] > 50, "the other worker's session stalled"
    x = active(joined(out["fresh"]))[-48000:-4800]
    assert dominant_hz(x) == pytest.approx(1300, abs=2)
    # the dead worker was restarted in its slot (a new process); the other one kept its pid
    status = server.wait_for(lambda s: s["worker_restarts"] == 1 and s["sessions"] == 0)
    workers = {w["index"]: w for w in status["workers"]}
    assert workers[victim]["alive"] and workers[victim]["pid"] != pids[victim]
    assert workers[1 - victim]["pid"] == pids[1 - victim]
    assert status["counts"]["pipelines"] == 0 and status["counts"]["peer_connections"] == 0


def test_shutdown_stops_workers_and_finalizes_their_sinks(
    hosts: Any, start_server: Any, tmp_path: Path
) -> None:
    record = tmp_path / "record"
    server = start_server(
        "--pipeline", manifest(tmp_path, GAIN), "--workers", "2", "--record", str(record)
    )
    pids = [w["pid"] for w in server.status()["workers"]]
    assert all(_alive(pid) for pid in pids)
    command = [sys.executable, "-m", "stream.transport", "connect", server.url, "--seconds", "60"]
    peers = [hosts.popen("client", [*command, "--tone", hz], cwd=REPO) for hz in ("500", "900")]
    try:
        server.wait_for(
            lambda s: s["sessions"] == 2 and all(x["frames_in"] > 50 for x in s["list"]),
            timeout=30,
        )
        assert sorted(w["sessions"] for w in server.status()["workers"]) == [1, 1]
        started = time.monotonic()
        assert server.stop() == 0, server.log()
        assert time.monotonic() - started < 12
        for peer in peers:
            assert peer.wait(20) == 0  # each peer saw its connection close
    finally:
        for peer in peers:
            if peer.poll() is None:
                peer.kill()
                peer.wait(5)
    deadline = time.monotonic() + 5
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids), "worker processes outlived the server"
    import wave

    heard = []
    for path in sorted(record.glob("*.wav")):
        with wave.open(str(path), "rb") as w:  # finalized headers: lengths match the data
            frames = w.getnframes()
            x = np.frombuffer(w.readframes(frames), "<i2").astype(np.float64) / 32768
        assert frames > 48000
        heard.append(round(dominant_hz(active(x)[4800:])))
    assert sorted(heard) == [500, 900]
