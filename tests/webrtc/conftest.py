"""WebRTC test hosts: a server process on one network namespace, peers on another.

Tests marked ``webrtc`` need root and ``ip netns`` (iproute2); they skip, saying why, where
those are missing. Everything they start runs on the test hosts the session fixture makes and
removes (``tests/hosts/netns.py``), so no traffic reaches a real interface.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "webrtc: needs root and ip netns; runs a WebRTC server and peers on test hosts",
    )


@pytest.fixture(scope="session")
def hosts() -> Iterator[Any]:
    """The two test hosts (server 10.213.0.1, client 10.213.0.2) for the whole session."""
    pytest.importorskip("aiortc", reason="aiortc is not installed (.ci/install-webrtc.sh)")
    from hosts.netns import netns_unavailable, test_hosts

    reason = netns_unavailable()
    if reason:
        pytest.skip(f"no WebRTC test hosts: {reason}")
    with test_hosts() as made:
        yield made


class ServerProcess:
    """``python -m stream.transport serve`` on the server host; its log is kept in ``lines``."""

    def __init__(self, hosts: Any, args: list[str], env: dict[str, str] | None = None) -> None:
        self.hosts = hosts
        argv = [sys.executable, "-m", "stream.transport", "serve"]
        # --drain-timeout 0: a test that stops the server means stop (test_lifecycle drains)
        argv += ["--host", hosts.server_ip, "--port", "0", "--drain-timeout", "0", *args]
        environment = {**os.environ, "PYTHONPATH": f"{REPO / 'tests'}:{REPO}", **(env or {})}
        self.proc = hosts.popen(
            "server",
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=environment,
            cwd=REPO,
        )
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
        if not ready.wait(30) or not self.url:
            self.stop()
            raise RuntimeError("the server did not start:\n" + self.log())

    def log(self) -> str:
        return "\n".join(self.lines[-80:])

    def http(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """An HTTP request from the client host: (status, JSON body or {"text": ...})."""
        import urllib.error
        import urllib.request

        async def call() -> tuple[int, bytes]:
            request = urllib.request.Request(
                self.url.rstrip("/") + path, data=body, method=method, headers=headers or {}
            )
            try:
                with urllib.request.urlopen(request, timeout=20) as resp:
                    return resp.status, resp.read()
            except urllib.error.HTTPError as err:
                return err.code, err.read()

        status, raw = self.hosts.run_async("client", call)
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, {"text": raw.decode(errors="replace")}

    def status(self, token: str | None = None) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        code, data = self.http("GET", "/status", headers=headers)
        assert code == 200, data
        return data

    def wait_for(self, predicate: Any, timeout: float = 15.0, token: str | None = None) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(token)
            if predicate(status):
                return status
            if time.monotonic() > deadline:
                raise AssertionError(f"status never matched: {status}\n{self.log()}")
            time.sleep(0.2)

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)
        return self.proc.returncode


@pytest.fixture
def start_server(hosts: Any) -> Iterator[Any]:
    """``start_server(*args)``: a server process with those ``serve`` arguments; stopped after."""
    started: list[ServerProcess] = []

    def start(*args: str, env: dict[str, str] | None = None) -> ServerProcess:
        server = ServerProcess(hosts, list(args), env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def manifest(tmp_path: Path, nodes: list[dict[str, Any]], name: str = "test") -> str:
    """Write a pipeline manifest and return its path."""
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"version": 1, "name": name, "nodes": nodes}))
    return str(path)
