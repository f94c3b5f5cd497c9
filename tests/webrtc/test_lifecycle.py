"""Health, readiness and graceful drain: the probes, SIGTERM with live sessions, deploy/ YAML."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO, manifest

pytest.importorskip("aiortc", reason="aiortc is not installed (.ci/install-webrtc.sh)")

from stream.transport.server import WebRTCServer
from stream.transport.webrtc import Peer

DRAIN_S = 4.0


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], Any]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            status, headers, body = resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        status, headers, body = err.code, dict(err.headers), err.read()
    try:
        return status, headers, json.loads(body)
    except ValueError:
        return status, headers, body.decode(errors="replace")


def _passthrough() -> Any:
    from media_nodes import PassThrough
    from stream.pipeline import Pipeline

    return Pipeline([PassThrough(name="pass")])


def test_probes_need_no_token_and_admin_routes_do() -> None:
    async def run() -> dict[str, Any]:
        server = WebRTCServer(_passthrough, "127.0.0.1", 0, token="t0k", admin_token="adm")
        out: dict[str, Any] = {}
        async with server:
            base = server.url.rstrip("/")
            call = asyncio.to_thread
            out["healthz"] = await call(_get, base + "/healthz")
            out["readyz"] = await call(_get, base + "/readyz")
            out["metrics_anon"] = await call(_get, base + "/metrics")
            out["metrics_user"] = await call(
                _get, base + "/metrics", {"Authorization": "Bearer t0k"}
            )
            out["metrics_admin"] = await call(
                _get, base + "/metrics", {"Authorization": "Bearer adm"}
            )
            out["config_anon"] = await call(_get, base + "/config")
            out["config"] = await call(_get, base + "/config", {"Authorization": "Bearer t0k"})
            # a drain with nothing to wait for ends at once, and stops the server
            await server.drain(timeout=60)
            out["stopped"] = server.stopping
        return out

    out = asyncio.run(run())
    assert out["healthz"][0] == 200 and out["healthz"][2] == {"status": "alive"}
    assert out["readyz"][0] == 200 and out["readyz"][2] == {"status": "ready"}
    assert out["metrics_anon"][0] == 401
    assert out["metrics_user"][0] == 401  # the admin token, not the offer token
    # 200 once prom.py and prometheus_client are there; 501 saying so until then
    code, headers, body = out["metrics_admin"]
    assert code in (200, 501), (code, body)
    if code == 501:
        assert "prometheus_client not installed" in body["error"]
    else:  # the exposition format
        assert headers["Content-Type"].startswith("text/plain"), headers
        assert "# TYPE " in body
    assert out["config_anon"][0] == 401
    assert out["config"][0] == 200 and out["config"][2] == {"iceServers": []}
    assert out["config"][1].get("Cache-Control") == "no-store"
    assert out["stopped"]


def test_readyz_says_why_not() -> None:
    async def run() -> list[tuple[int, Any]]:
        server = WebRTCServer(_passthrough, "127.0.0.1", 0, max_sessions=1)
        seen: list[tuple[int, Any]] = []
        async with server:
            base = server.url.rstrip("/")
            seen.append((await asyncio.to_thread(_get, base + "/readyz"))[::2])
            server._answering.add("held")  # an offer being answered takes the one slot
            seen.append((await asyncio.to_thread(_get, base + "/readyz"))[::2])
            server._answering.discard("held")
        return seen

    ready, full = asyncio.run(run())
    assert ready == (200, {"status": "ready"})
    assert full == (503, {"status": "not ready", "reason": "full: 1 sessions"})


@pytest.mark.webrtc
def test_sigterm_drains_two_live_sessions(hosts: Any, start_server: Any, tmp_path: Path) -> None:
    """SIGTERM with two live sessions: /readyz 503 and offers 503 while they run on, then both
    peers are told why they are closed, and the process exits 0 within the drain timeout."""
    from media_nodes.sources import ToneSource

    server = start_server(
        "--pipeline",
        manifest(tmp_path, [{"type": "Gain", "name": "gain", "params": {"gain_db": -6}}]),
        "--drain-timeout",
        f"{DRAIN_S:g}",
    )
    connected = threading.Event()
    outcome: dict[str, Any] = {}

    async def two_peers() -> list[Any]:
        peers = [
            Peer(server.url, ToneSource(440, duration_s=120, realtime=True), []) for _ in range(2)
        ]
        try:
            for peer in peers:
                await peer.start()
            connected.set()
            for peer in peers:  # the server ends them; the bound only keeps a failure finite
                await peer.wait_ended(DRAIN_S + 60)
        finally:
            for peer in peers:
                await peer.close()
        return [p.result for p in peers]

    def run_peers() -> None:
        try:
            outcome["results"] = hosts.run_async("client", two_peers, timeout=180)
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            connected.set()

    thread = threading.Thread(target=run_peers, name="peers")
    thread.start()
    assert connected.wait(60)
    assert "error" not in outcome, outcome.get("error")
    server.wait_for(lambda s: s["sessions"] == 2, timeout=20)
    code, ready = server.http("GET", "/readyz")
    assert (code, ready) == (200, {"status": "ready"})

    signalled = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    # while draining: alive, not ready, offers refused with a Retry-After
    deadline = time.monotonic() + 10
    while True:
        code, ready = server.http("GET", "/readyz")
        if code == 503 or time.monotonic() > deadline:
            break
    assert (code, ready) == (503, {"status": "not ready", "reason": "draining"}), server.log()
    assert server.http("GET", "/healthz")[0] == 200
    refused, body = server.http("POST", "/offer", b"{}", {"Content-Type": "application/json"})
    assert refused == 503 and "shutting down" in body["error"], body

    returncode = server.proc.wait(DRAIN_S + 30)
    took = time.monotonic() - signalled
    thread.join(60)
    assert returncode == 0, server.log()
    assert "error" not in outcome, outcome.get("error")
    results = outcome["results"]
    reason = f"server shutting down: drain timeout ({DRAIN_S:g} s) reached"
    for result in results:
        assert result.close_reason == reason, (result.close_reason, result.messages[-3:])
        assert any(m.get("type") == "draining" for m in result.messages)
        assert result.audio_seconds_received > 1.0  # the sessions ran on while draining
    # the sessions were closed by the drain's end, not before it, and the exit followed it
    assert took >= DRAIN_S
    assert took < DRAIN_S + 30
    assert any("draining 2 sessions" in line for line in server.lines), server.log()


@pytest.mark.webrtc
def test_second_signal_closes_at_once(hosts: Any, start_server: Any, tmp_path: Path) -> None:
    from media_nodes.sources import ToneSource

    server = start_server("--drain-timeout", "600")
    connected = threading.Event()
    outcome: dict[str, Any] = {}

    async def one_peer() -> Any:
        async with Peer(server.url, ToneSource(440, duration_s=600, realtime=True), []) as peer:
            connected.set()
            await peer.wait_ended(120)
        return peer.result

    def run_peer() -> None:
        try:
            outcome["result"] = hosts.run_async("client", one_peer, timeout=180)
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            connected.set()

    thread = threading.Thread(target=run_peer, name="peer")
    thread.start()
    assert connected.wait(60)
    server.wait_for(lambda s: s["sessions"] == 1, timeout=20)
    server.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while server.http("GET", "/readyz")[0] != 503 and time.monotonic() < deadline:
        pass
    server.proc.send_signal(signal.SIGINT)
    returncode = server.proc.wait(60)  # not the 600 s drain
    thread.join(60)
    assert returncode == 0, server.log()
    assert "error" not in outcome, outcome.get("error")
    assert outcome["result"].close_reason == "server stopping now"
    assert any("stopping now" in line for line in server.lines), server.log()


def test_deploy_manifests_parse_and_agree() -> None:
    """deploy/kubernetes.yaml: probes on /healthz and /readyz, a preStop hook, and a grace
    period longer than the drain timeout the container is started with."""
    yaml = pytest.importorskip("yaml")
    docs = [d for d in yaml.safe_load_all((REPO / "deploy" / "kubernetes.yaml").read_text()) if d]
    kinds = {d["kind"]: d for d in docs}
    assert {"Deployment", "Service"} <= set(kinds)
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    argv = [*container.get("command", []), *container.get("args", [])]
    drain_s = float(argv[argv.index("--drain-timeout") + 1])
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["lifecycle"]["preStop"]
    pre_stop = container["lifecycle"]["preStop"]
    pre_stop_s = float(pre_stop.get("sleep", {}).get("seconds", 0))
    # the kubelet waits preStop, then SIGTERM, then the drain, before its SIGKILL
    assert pod["terminationGracePeriodSeconds"] > pre_stop_s + drain_s
    port = container["ports"][0]["containerPort"]
    assert str(port) == argv[argv.index("--port") + 1]
    service = kinds["Service"]["spec"]
    assert (
        service["selector"].items()
        <= kinds["Deployment"]["spec"]["selector"]["matchLabels"].items()
    )


@pytest.mark.webrtc
def test_sigterm_drains_worker_sessions(hosts: Any, start_server: Any, tmp_path: Path) -> None:
    """With a worker process: /readyz is ready once the worker is up, 503 while draining; the
    session runs on to the drain timeout, then ends with the reason told to its peer (by the
    worker), and the process exits 0."""
    from media_nodes.sources import ToneSource

    server = start_server("--workers", "1", "--drain-timeout", f"{DRAIN_S:g}")
    assert server.http("GET", "/readyz") == (200, {"status": "ready"})
    connected = threading.Event()
    outcome: dict[str, Any] = {}

    async def one_peer() -> Any:
        async with Peer(server.url, ToneSource(440, duration_s=120, realtime=True), []) as peer:
            connected.set()
            await peer.wait_ended(DRAIN_S + 60)
        return peer.result

    def run_peer() -> None:
        try:
            outcome["result"] = hosts.run_async("client", one_peer, timeout=180)
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            connected.set()

    thread = threading.Thread(target=run_peer, name="peer")
    thread.start()
    assert connected.wait(60)
    server.wait_for(lambda s: s["sessions"] == 1, timeout=20)
    signalled = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 10
    while (got := server.http("GET", "/readyz"))[0] != 503 and time.monotonic() < deadline:
        pass
    assert got == (503, {"status": "not ready", "reason": "draining"}), server.log()
    returncode = server.proc.wait(DRAIN_S + 30)
    took = time.monotonic() - signalled
    thread.join(60)
    assert returncode == 0, server.log()
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    reason = f"server shutting down: drain timeout ({DRAIN_S:g} s) reached"
    assert result.close_reason == reason, (result.close_reason, result.messages[-3:])
    assert result.audio_seconds_received > DRAIN_S / 2  # it ran on while draining
    assert DRAIN_S <= took < DRAIN_S + 30
