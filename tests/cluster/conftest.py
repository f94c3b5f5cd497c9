"""Ray tests: a real two-node Ray cluster (two raylets), each node a host of its own.

Tests marked ``ray`` need Ray (``.ci/install-ray.sh``), root, ``ip netns`` and util-linux's
``unshare``/``nsenter``; they skip, saying why, where those are missing. They run only when
selected (``pytest -m ray tests/cluster``, CI's own bounded step), so the main test runs do not pay
for a cluster. The head (10.214.0.1), the worker node (10.214.0.2) and the WebRTC peers
(10.214.0.200) each live in a network namespace of their own, joined by a bridge in a fourth
(``local_cluster(lan=True)``), so no test traffic reaches a real interface; each test's driver
and WebRTC front are separate processes on the head host.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DRIVER_TIMEOUT_S = 90


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "ray: needs Ray, root and ip netns; runs a two-node Ray cluster in a namespace"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "ray" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="Ray cluster tests run in their own step: pytest -m ray")
    for item in items:
        if item.get_closest_marker("ray") is not None:
            item.add_marker(skip)


class Cluster:
    """The session's cluster, with ``scenario(name, arg)`` running a driver inside it."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.addresses: dict[str, str] = cluster.addresses

    def scenario(self, name: str, arg: str = "") -> dict[str, Any]:
        argv = [sys.executable, str(HERE / "scenarios.py"), name]
        if arg:
            argv.append(arg)
        done = self.cluster.run(
            argv, capture_output=True, text=True, timeout=DRIVER_TIMEOUT_S, cwd=REPO
        )
        results = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
        if done.returncode != 0 or not results:
            tail = "\n".join(done.stderr.strip().splitlines()[-30:])
            pytest.fail(f"driver {name} {arg} failed (exit {done.returncode}):\n{tail}")
        result: dict[str, Any] = json.loads(results[-1][len("RESULT ") :])
        return result


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Cluster]:
    """A head (2 CPUs, resource ``head``) and a worker node (1 CPU, resource ``worker``), each
    on a host of its own, and a ``peer`` host."""
    pytest.importorskip("ray", reason="Ray is not installed (.ci/install-ray.sh)")
    from hosts.ray_cluster import cluster_unavailable, local_cluster

    reason = cluster_unavailable()
    if reason:
        pytest.skip(f"no Ray test cluster: {reason}")
    with local_cluster(workers=1, head_cpus=2, worker_cpus=1, lan=True) as cluster:
        yield Cluster(cluster)


class Front:
    """``python -m stream.transport serve --ray HEAD`` on the head host; its log in ``lines``.

    HTTP requests go from the peer host. ``stop()`` ends it as Ctrl-C would.
    """

    def __init__(self, cluster: Cluster, args: list[str], token: str | None = None) -> None:
        self.cluster = cluster
        self.token = token
        c = cluster.cluster
        argv = [sys.executable, "-m", "stream.transport", "serve", "--ray", c.address]
        argv += ["--host", c.addresses["head"], "--port", "0", *args]
        if token:
            argv += ["--token", token]
        self.proc = c.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.url = ""
        ready = threading.Event()

        def read() -> None:
            assert self.proc.stdout is not None
            for line in self.proc.stdout:
                self.lines.append(line.rstrip())
                if line.startswith("serving on "):
                    self.url = line.split()[2]
                    ready.set()
            ready.set()

        self._reader = threading.Thread(target=read, daemon=True)
        self._reader.start()
        if not ready.wait(FRONT_START_S) or not self.url:
            self.stop()
            raise RuntimeError("the front did not start:\n" + self.log())

    def log(self) -> str:
        return "\n".join(line for line in self.lines[-150:] if "[state-dump]" not in line)

    def http(
        self, method: str, path: str, token: str | None = None, body: bytes | None = None
    ) -> tuple[int, dict[str, Any]]:
        """A request from the peer host: (status, JSON body)."""
        import urllib.error
        import urllib.request

        headers = {"Authorization": f"Bearer {token}"} if token else {}

        async def call() -> tuple[int, bytes]:
            url = self.url.rstrip("/") + path
            request = urllib.request.Request(url, data=body, method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=20) as resp:
                    return int(resp.status), resp.read()
            except urllib.error.HTTPError as err:
                return err.code, err.read()

        status, raw = self.cluster.cluster.run_async("peer", call, 30)
        return status, json.loads(raw)

    def status(self) -> dict[str, Any]:
        code, data = self.http("GET", "/status", self.token)
        assert code == 200, data
        return data

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if predicate(status):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"status never matched: {status}\n{self.log()}")
            time.sleep(0.2)

    def stop(self, timeout: float = 20.0) -> int | None:
        code = self.cluster.cluster.stop(self.proc, timeout)
        self._reader.join(5)
        return code


FRONT_START_S = 120  # joining the cluster, an actor per node, and a session host each


@pytest.fixture
def front(ray_cluster: Cluster) -> Iterator[Callable[..., Front]]:
    """``front(*serve_args, token=None)``: a WebRTC front on the cluster; stopped after."""
    started: list[Front] = []

    def start(*args: str, token: str | None = None) -> Front:
        made = Front(ray_cluster, list(args), token)
        started.append(made)
        return made

    yield start
    for made in started:
        made.stop()


def manifest(tmp_path: Path, nodes: list[dict[str, Any]], name: str = "test") -> str:
    """Write a pipeline manifest and return its path."""
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"version": 1, "name": name, "nodes": nodes}))
    return str(path)
