"""WebRTC sessions on Ray worker actors (``serve --ray``), on the two-node test cluster.

The front runs on the head host, one session worker per node (head 10.214.0.1, worker node
10.214.0.2), peers on the peer host (10.214.0.200): real aiortc peers, a real Ray cluster.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from webrtc.signals import active, band_share, dominant_hz, joined, rms_db  # tests/ is on the path

from stream.testing import split_frames, tone

from .conftest import manifest

pytestmark = pytest.mark.ray

GAIN = [{"type": "Gain", "name": "gain", "params": {"gain_db": 0}}]
TONE_DB = 20 * np.log10(0.5 / np.sqrt(2))
CPUS = ("--ray-cpus", "0.5")  # the worker node has 1 CPU; RemoteStage tests use it too
TOKEN = "s3cret"


def _frames(hz: float, seconds: float) -> Any:
    return split_frames(tone(hz, seconds, 48000, amplitude=0.5), 48000, 960)


def _media_address(peer: Any) -> str:
    """The address the peer's media goes to: the remote side of its nominated ICE pair."""
    for transceiver in peer.pc.getTransceivers():
        ice = transceiver.receiver.transport.transport
        pair = ice._connection._nominated.get(1)  # aioice's selected pair for RTP
        if pair is not None:
            return str(pair.remote_candidate.host)
    raise AssertionError("no nominated ICE pair")


async def _status(url: str, token: str | None = None) -> dict[str, Any]:
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.get(url.rstrip("/") + "/status", headers=headers) as resp,
    ):
        data: dict[str, Any] = await resp.json()
        return data


async def _status_when(
    url: str, ok: Callable[[dict[str, Any]], bool], token: str | None = None
) -> dict[str, Any]:
    """The first ``/status`` that ``ok`` accepts (polled; a loaded machine may take a while)."""
    async with asyncio.timeout(30):
        while not ok(status := await _status(url, token)):
            await asyncio.sleep(0.1)
    return status


def _placed(status: dict[str, Any], *sessions: str | None) -> bool:
    return set(sessions) <= {s["session"] for s in status["list"]}


def _where(status: dict[str, Any], session: str | None) -> dict[str, Any]:
    found = [s for s in status["list"] if s["session"] == session]
    assert found, f"session {session} not in {status['list']}"
    return found[0]


def test_two_sessions_on_two_nodes_get_their_tone_back(
    ray_cluster: Any, front: Any, tmp_path: Path
) -> None:
    from stream.transport.webrtc import Peer

    server = front("--pipeline", manifest(tmp_path, GAIN), *CPUS)
    workers = server.status()["workers"]
    nodes = {w["node_ip"] for w in workers}
    assert nodes == {ray_cluster.addresses["head"], ray_cluster.addresses["worker0"]}, workers
    assert all(w["kind"] == "ray" and w["alive"] for w in workers)
    plan = [(440.0, -3.0), (880.0, -9.0)]
    busy: dict[str, Any] = {}

    async def one(hz: float, gain_db: float) -> tuple[list[Any], str, str | None]:
        received: list[Any] = []
        async with Peer(server.url, _frames(hz, 3.0), received) as peer:
            message = {"type": "set", "stage": "gain", "param": "gain_db", "value": gain_db}
            answer = await peer.request(message)
            assert answer["type"] == "ack", answer
            media = _media_address(peer)
            await peer.wait_sent(20)
            await peer.wait_ended(0.6)
        return received, media, peer.result.session

    async def look() -> None:
        busy.update(await _status_when(server.url, lambda s: s["sessions"] == len(plan)))

    async def run() -> list[Any]:
        return list(await asyncio.gather(*(one(hz, g) for hz, g in plan), look()))

    results = ray_cluster.cluster.run_async("peer", run, 90)[: len(plan)]
    placed = set()
    for (hz, gain_db), (received, media, session) in zip(plan, results, strict=True):
        x = active(joined(received))[-72000:-12000]
        assert dominant_hz(x) == pytest.approx(hz, abs=2)
        assert band_share(x, hz) > 0.99, f"{hz} Hz session hears the other session"
        assert rms_db(x) == pytest.approx(TONE_DB + gain_db, abs=0.7)
        where = _where(busy, session)
        # media went straight to the node the front placed the session on
        assert media == where["node"], (media, where)
        placed.add((where["worker"], where["node"]))
    assert len(placed) == 2, f"both sessions on one worker: {placed}"
    assert busy["sessions"] == 2 and busy["counts"]["peer_connections"] == 2, busy
    assert sorted(w["sessions"] for w in busy["workers"]) == [1, 1], busy["workers"]
    idle = server.wait_for(lambda s: s["sessions"] == 0 and s["counts"]["pipelines"] == 0)
    assert idle["counts"]["tracks"] == 0 and idle["counts"]["peer_connections"] == 0
    assert idle["sessions_total"] == 2


def test_a_drained_worker_takes_no_new_sessions_and_keeps_its_own(
    ray_cluster: Any, front: Any, tmp_path: Path
) -> None:
    from stream.transport.webrtc import Peer

    server = front("--pipeline", manifest(tmp_path, GAIN), *CPUS, token=TOKEN)
    assert server.http("POST", "/workers/0/drain")[0] == 401  # the token guards it
    assert server.http("POST", "/workers/7/drain", TOKEN)[0] == 404
    steps: dict[str, Any] = {}

    async def run() -> dict[str, Any]:
        kept: list[Any] = []
        async with Peer(server.url, _frames(300.0, 8.0), kept, token=TOKEN) as first:
            status = await _status_when(
                server.url, lambda s: _placed(s, first.result.session), TOKEN
            )
            where = _where(status, first.result.session)
            # drain the worker the running session is on: it keeps its session
            code, drained = await asyncio.to_thread(
                server.http, "POST", f"/workers/{where['worker']}/drain", TOKEN
            )
            steps.update(first=where, code=code, drained=drained, heard=len(kept))
            later = []
            for hz in (700.0, 1100.0):  # the other worker gets both, though it has more
                received: list[Any] = []
                async with Peer(server.url, _frames(hz, 1.5), received, token=TOKEN) as peer:
                    steps.setdefault("status", []).append(await _status(server.url, TOKEN))
                    await peer.wait_sent(20)
                    await peer.wait_ended(0.6)
                later.append((hz, received, peer.result.session))
            steps["heard_after"] = len(kept)
            await first.wait_sent(20)
            await first.wait_ended(0.6)
        steps["first_ended_by"] = first.result.ended_by
        steps["kept"] = kept
        steps["later"] = later
        return steps

    out = ray_cluster.cluster.run_async("peer", run, 120)
    drained_index = out["first"]["worker"]
    assert out["code"] == 200 and out["drained"]["draining"] is True, out["drained"]
    assert out["drained"]["index"] == drained_index
    for (hz, received, session), status in zip(out["later"], out["status"], strict=True):
        where = _where(status, session)
        assert where["worker"] != drained_index, f"{hz} Hz placed on the drained worker"
        x = active(joined(received))[-48000:-4800]
        assert dominant_hz(x) == pytest.approx(hz, abs=2)
    last = out["status"][-1]
    drained = next(w for w in last["workers"] if w["index"] == drained_index)
    assert drained["draining"] and drained["sessions"] == 1, drained
    # the drained worker's session ran on to its end, uninterrupted
    assert out["heard_after"] > out["heard"] + 50
    assert out["first_ended_by"] == "peer"
    x = active(joined(out["kept"]))[-300000:-12000]
    assert dominant_hz(x) == pytest.approx(300, abs=2)
    assert rms_db(x) == pytest.approx(TONE_DB, abs=0.7)


def test_a_killed_worker_ends_its_session_with_an_error_and_new_ones_go_elsewhere(
    ray_cluster: Any, front: Any, tmp_path: Path
) -> None:
    from stream.transport.webrtc import Peer
    from stream.transport.worker_protocol import GONE_NOTICE

    server = front("--pipeline", manifest(tmp_path, GAIN), *CPUS)
    before = {w["index"]: w for w in server.status()["workers"]}

    async def run() -> dict[str, Any]:
        sinks: list[list[Any]] = [[], []]
        peers = [
            Peer(server.url, _frames(hz, 30.0), sink)
            for hz, sink in zip((440.0, 880.0), sinks, strict=True)
        ]
        for peer in peers:
            await peer.start()
        status = await _status_when(
            server.url, lambda s: _placed(s, *(p.result.session for p in peers))
        )
        victim = _where(status, peers[0].result.session)["worker"]
        other = _where(status, peers[1].result.session)["worker"]
        actor_pid = before[victim]["actor_pid"]
        killed = await asyncio.to_thread(
            ray_cluster.cluster.run, ["kill", "-KILL", str(actor_pid)], capture_output=True
        )
        assert killed.returncode == 0, killed.stderr
        t0 = asyncio.get_running_loop().time()
        # a new session at once: never on the dead worker, whether the front knows yet or not
        fresh: list[Any] = []
        async with Peer(server.url, _frames(1300.0, 2.0), fresh) as peer:
            fresh_status = await _status(server.url)
            await peer.wait_sent(20)
            await peer.wait_ended(0.6)
        ended = await peers[0].wait_ended(10)
        waited = asyncio.get_running_loop().time() - t0
        for _ in range(50):  # the fresh session's end reaches the front within a poll
            after = await _status(server.url)
            if after["sessions"] == 1:
                break
            await asyncio.sleep(0.1)
        counts = [len(s) for s in sinks]
        await asyncio.sleep(1.0)
        grown = [len(s) - c for s, c in zip(sinks, counts, strict=True)]
        for peer in peers:
            await peer.close()
        return {
            "victim": victim,
            "other": other,
            "ended": ended,
            "waited": waited,
            "ended_by": peers[0].result.ended_by,
            "messages": peers[0].result.messages,
            "grown": grown,
            "fresh": fresh,
            "fresh_session": peer.result.session,
            "fresh_status": fresh_status,
            "after": after,
        }

    out = ray_cluster.cluster.run_async("peer", run, 120)
    victim, other = out["victim"], out["other"]
    assert victim != other
    # the victim's peer was told, then its connection closed: no wait for ICE consent (30 s)
    assert out["ended"], f"the dead worker's peer never saw its session end\n{server.log()}"
    assert out["waited"] < 10
    assert out["ended_by"] == "connection closed"
    errors = [m for m in out["messages"] if m.get("type") == "error"]
    assert [m["message"] for m in errors] == [GONE_NOTICE], out["messages"][-5:]
    assert out["grown"][0] == 0 and out["grown"][1] > 25, out["grown"]
    assert _where(out["fresh_status"], out["fresh_session"])["worker"] == other
    after = out["after"]  # the front dropped the dead worker's session
    assert after["sessions"] == 1, (after["list"], after["workers"])
    x = active(joined(out["fresh"]))[-48000:-4800]
    assert dominant_hz(x) == pytest.approx(1300, abs=2)
    # the dead worker's slot is restarted on the same node: a new actor and session host
    status = server.wait_for(lambda s: s["worker_restarts"] == 1 and s["sessions"] == 0, 60)
    workers = {w["index"]: w for w in status["workers"]}
    assert workers[victim]["alive"], (workers[victim], server.log())
    assert workers[victim]["node_ip"] == before[victim]["node_ip"]
    assert workers[victim]["actor_pid"] != before[victim]["actor_pid"]
    assert workers[other]["actor_pid"] == before[other]["actor_pid"]
    assert status["counts"]["pipelines"] == 0 and status["counts"]["peer_connections"] == 0


def test_ray_local_starts_a_ray_in_the_server_process(tmp_path: Path) -> None:
    """``serve --ray local`` on a test host: a Ray of its own, one session worker, a session."""
    import os
    import subprocess
    import sys
    import threading

    from hosts.netns import netns_unavailable, test_hosts

    from stream.transport.webrtc import connect

    reason = netns_unavailable()
    if reason:
        pytest.skip(f"no test hosts: {reason}")
    # RAY_AUTH_MODE: a new local Ray otherwise writes a token to ~/.ray on this machine, and
    # every later `ray start` here would then want it
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    with test_hosts("rl") as hosts:
        argv = [sys.executable, "-m", "stream.transport", "serve", "--ray", "local", *CPUS]
        argv += ["--host", hosts.server_ip, "--port", "0"]
        argv += ["--pipeline", manifest(tmp_path, GAIN)]
        proc = hosts.popen(
            "server", argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        lines: list[str] = []
        ready = threading.Event()

        def read() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line.rstrip())
                if line.startswith("serving on "):
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        ready.wait(120)
        serving = [line.split()[2] for line in lines if line.startswith("serving on ")]
        assert serving, "the server did not start:\n" + "\n".join(lines[-40:])
        url = serving[0]

        async def run() -> tuple[list[Any], dict[str, Any]]:
            received: list[Any] = []
            result = await connect(url, _frames(440.0, 2.0), received)
            assert result.frames_received > 50
            return received, await _status(url)

        received, status = hosts.run_async("client", run, 60)
        proc.terminate()
        assert proc.wait(30) == 0, "\n".join(lines[-40:])
    x = active(joined(received))[-48000:-4800]
    assert dominant_hz(x) == pytest.approx(440, abs=2)
    assert rms_db(x) == pytest.approx(TONE_DB, abs=0.7)
    assert status["worker_kind"] == "ray" and status["sessions_total"] == 1
    (worker,) = status["workers"]
    assert worker["kind"] == "ray" and worker["pid"] != proc.pid
    assert any(line.startswith("stopped") for line in lines)
