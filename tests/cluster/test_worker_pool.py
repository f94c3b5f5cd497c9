"""The worker interface both kinds of session worker share, without a Ray cluster.

Placement order and caps, drain over HTTP, restarts with a growing delay (process workers, on
loopback: signaling only, no media), the ``--ray`` option's failure without Ray, that a server
without it imports nothing of Ray, node-side ICE address resolution, and the KubeRay manifest.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from stream.errors import BackendUnavailable, ConfigError, TransportError

pytest.importorskip("aiortc", reason="aiortc is not installed (.ci/install-webrtc.sh)")

from stream.transport.cli import pipeline_factory, serve_main
from stream.transport.placement import candidates
from stream.transport.process_workers import CpuMeter, cpu_seconds
from stream.transport.server import WebRTCServer
from stream.transport.supervisor import restart_delay

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "deploy" / "kuberay-raycluster.yaml"


def test_restart_delays_grow_and_are_bounded() -> None:
    assert [restart_delay(n) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert restart_delay(100) == 30


class _Handle:
    """A worker as placement sees it (no process behind it)."""

    def __init__(self, index: int, sessions: int, cpu: float, *, draining: bool = False) -> None:
        self.index = index
        self.sessions = {f"s{index}-{i}" for i in range(sessions)}
        self.alive = True
        self.draining = draining
        self.cpu = cpu

    @property
    def load(self) -> int:
        return len(self.sessions)


def _server(**kwargs: Any) -> WebRTCServer:
    return WebRTCServer(pipeline_factory(None, None, None), "127.0.0.1", 0, **kwargs)


def test_placement_takes_fewest_sessions_then_least_cpu_and_skips_full_or_draining() -> None:
    workers: list[Any] = [
        _Handle(0, 2, 0.10),
        _Handle(1, 1, 0.90),
        _Handle(2, 1, 0.20),
        _Handle(3, 0, 0.00, draining=True),
    ]
    assert [w.index for w in candidates(workers, 3)] == [2, 1, 0]
    workers[0].sessions.add("third")  # at the cap of 3
    assert [w.index for w in candidates(workers, 3)] == [2, 1]
    assert [w.index for w in candidates(workers, None)] == [2, 1, 0]


async def _request(server: WebRTCServer, method: str, path: str, token: str | None = None) -> Any:
    import aiohttp

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{server.url.rstrip('/')}{path}", headers=headers) as resp,
    ):
        return resp.status, await resp.json()


async def _wait(predicate: Any, timeout: float, what: str) -> float:
    """Seconds until ``predicate()`` held; AssertionError after ``timeout``."""
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        await asyncio.sleep(0.05)
    return time.monotonic() - t0


async def test_drain_endpoint_and_restarts_with_a_growing_delay() -> None:
    server = _server(workers=1, token="t0ken")
    async with server:
        worker = server.workers[0]
        pid = worker.describe()["pid"]
        assert (await _request(server, "POST", "/workers/0/drain"))[0] == 401
        assert (await _request(server, "POST", "/workers/5/drain", "t0ken"))[0] == 404
        assert (await _request(server, "POST", "/workers/x/drain", "t0ken"))[0] == 404
        # a worker that dies is restarted in its slot: after 1 s, then 2 s when it dies again
        os.kill(pid, signal.SIGKILL)
        first = await _wait(lambda: server.worker_restarts == 1, 60, "first restart")
        assert first >= 1.0
        again = server.workers[0]
        assert again.alive and again.describe()["pid"] != pid
        os.kill(again.describe()["pid"], signal.SIGKILL)
        second = await _wait(lambda: server.worker_restarts == 2, 60, "second restart")
        assert second >= 2.0, f"restarted after {second:.2f} s: no backoff"
        status = await server.gather_status()
        assert status["worker_kind"] == "process" and status["worker_restarts"] == 2
        # drained: no new sessions, 503 for an offer; a drained worker that dies stays dead
        code, body = await _request(server, "POST", "/workers/0/drain", "t0ken")
        assert code == 200 and body["draining"] is True and body["index"] == 0
        assert candidates(server.workers, server.settings.worker_sessions) == []
        status = await server.gather_status()
        assert status["workers"][0]["draining"] is True
        os.kill(server.workers[0].describe()["pid"], signal.SIGKILL)
        await _wait(lambda: not server.workers[0].alive, 10, "death seen")
        await asyncio.sleep(1.5)
        assert server.supervisor is not None
        assert server.worker_restarts == 2 and not server.supervisor.restarting


def test_ray_without_ray_installed_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    with pytest.raises(BackendUnavailable, match=r"pip install remotemedia\[ray\]"):
        _server(ray_address="auto")
    assert serve_main(["--ray", "auto", "--port", "0"]) == 1
    assert "Ray is not installed: pip install remotemedia[ray]" in capsys.readouterr().err


def test_an_unreachable_head_fails_fast_and_says_so() -> None:
    probe = subprocess.run([sys.executable, "-c", "import ray"], cwd=REPO, capture_output=True)
    if probe.returncode != 0:
        pytest.skip("Ray is not installed (.ci/install-ray.sh)")
    argv = [sys.executable, "-m", "stream.transport", "serve", "--ray", "127.0.0.1:1"]
    t0 = time.monotonic()
    done = subprocess.run(
        [*argv, "--port", "0"], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert done.returncode == 1, done.stderr[-2000:]
    assert "cannot reach the Ray head at 127.0.0.1:1" in done.stderr
    assert time.monotonic() - t0 < 60  # Ray alone retries for minutes


def test_ray_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="worker_sessions"):
        _server(workers=1, worker_sessions=0)
    with pytest.raises(ConfigError, match="ray_address"):
        _server(ray_address=" ")


def test_a_server_without_ray_imports_no_ray() -> None:
    code = (
        "import asyncio, sys\n"
        "from stream.transport.cli import pipeline_factory, serve_parser\n"
        "from stream.transport.server import WebRTCServer\n"
        "serve_parser().parse_args(['--workers', '1'])\n"
        "async def main():\n"
        "    for workers in (0, 1):\n"
        "        server = WebRTCServer(pipeline_factory(None, None, None), '127.0.0.1', 0,\n"
        "                              workers=workers)\n"
        "        async with server:\n"
        "            await server.gather_status()\n"
        "asyncio.run(main())\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_ice_addresses_are_resolved_on_the_node() -> None:
    from stream.ray.session_actor import resolve_on_node

    assert resolve_on_node(()) is None
    assert "127.0.0.1" in (resolve_on_node(["lo"]) or ())
    assert resolve_on_node(["127.0.0.1", "192.0.2.77"]) == frozenset({"127.0.0.1"})
    with pytest.raises(ConfigError, match="on this node"):
        resolve_on_node(["192.0.2.77", "nosuchif0"])


def test_ray_failures_become_transport_errors_in_one_place() -> None:
    ray = pytest.importorskip("ray", reason="Ray is not installed (.ci/install-ray.sh)")
    from stream.ray._ray import transport_errors

    cause = ray.exceptions.RaySystemError("the raylet went away\n  long traceback here")
    with pytest.raises(TransportError) as caught, transport_errors("worker 3 (node 10.0.0.7)"):
        raise cause
    assert (
        str(caught.value)
        == "worker 3 (node 10.0.0.7) failed (RaySystemError): " + str(cause).strip().splitlines()[0]
    )
    assert caught.value.__cause__ is cause
    with pytest.raises(ValueError, match="not Ray's"), transport_errors("worker 3"):
        raise ValueError("not Ray's")


def test_cpu_of_a_process() -> None:
    meter = CpuMeter(window_s=0.2)
    pid = os.getpid()
    assert meter.sample(pid) == 0.0  # the first sample is the baseline
    used = cpu_seconds(pid)
    assert used is not None
    t0 = time.process_time()
    while time.process_time() - t0 < 0.3:  # 0.3 s of this process's CPU, however long it takes
        pass
    after = cpu_seconds(pid)
    assert after is not None and after - used >= 0.25
    time.sleep(0.2)
    assert meter.sample(pid) > 0.0
    assert cpu_seconds(2**22 + 7) is None  # no such process
    assert meter.sample(None) == 0.0


def test_kuberay_manifest_is_a_raycluster() -> None:
    yaml = pytest.importorskip("yaml")
    docs = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"RayCluster", "Service"}
    cluster = kinds["RayCluster"]
    assert cluster["apiVersion"] == "ray.io/v1"
    assert cluster["metadata"]["annotations"]["ray.io/overwrite-container-cmd"] == "true"
    head = cluster["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"  # no session workers on the head
    script = " ".join(head["template"]["spec"]["containers"][0]["args"])
    assert "$KUBERAY_GEN_RAY_START_CMD" in script and "remotemedia serve --ray auto" in script
    (workers,) = cluster["spec"]["workerGroupSpecs"]
    assert workers["template"]["spec"]["hostNetwork"] is True  # media straight to the node
    for spec in (head, workers):
        for key, value in spec["rayStartParams"].items():
            assert isinstance(value, str), f"rayStartParams.{key} must be a string"
    service = kinds["Service"]
    assert service["spec"]["selector"]["ray.io/node-type"] == "head"
    assert service["spec"]["selector"]["ray.io/cluster"] == cluster["metadata"]["name"]
    ports = {p["port"] for p in service["spec"]["ports"]}
    assert ports == {8080}
    json.dumps(docs)  # plain data: nothing YAML-only (anchors resolve, no custom tags)
