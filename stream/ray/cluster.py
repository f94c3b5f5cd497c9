"""A throwaway multi-node Ray cluster on this machine, for tests and benchmarks (root needed).

By default Ray binds the machine's outward address. Inside a network namespace that has only
``lo``, every Ray process binds 127.0.0.1, so no cluster traffic can leave it. ``local_cluster()``
makes such a namespace, plus a PID namespace (so ``ray stop`` there sees only this cluster's
processes, and ending the namespace's first process ends every process of the cluster), then
starts a head node and worker nodes, each a separate raylet::

    with local_cluster(workers=1) as cluster:  # head has resource "head", worker i "worker"
        done = cluster.run([sys.executable, "driver.py"], capture_output=True, timeout=60)

Drivers run inside the namespaces too (``cluster.run``/``cluster.command``), with ``RAY_ADDRESS``
set. Everything is stopped and removed on exit, also when the block fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HEAD_PORT = 6379  # free in a fresh namespace: nothing else listens there
OBJECT_STORE_BYTES = 150 * 1024 * 1024  # per node; Ray's default takes 30% of RAM
SLOTS = 100  # units of each node's custom resource: resources={"worker": 1} places 100 stages

# pid 1 of the PID namespace: reaps the processes `ray start` leaves behind, so `ray stop`
# does not wait on zombies; killed (with everything in the namespace) when the cluster ends
_REAPER = (
    "import os, time\n"
    "while True:\n"
    "    try:\n"
    "        os.wait()\n"
    "    except ChildProcessError:\n"
    "        time.sleep(0.2)\n"
)


def cluster_unavailable() -> str | None:
    """Why a local cluster cannot be made here, or None."""
    from ..transport.netns import netns_unavailable

    reason = netns_unavailable()
    if reason:
        return reason
    for tool in ("unshare", "nsenter"):
        if shutil.which(tool) is None:
            return f"the {tool} command (util-linux) is not installed"
    if shutil.which("ray") is None:
        return "the ray command is not installed (pip install remotemedia[ray])"
    return None


@dataclass
class LocalCluster:
    """A running cluster: its namespace, head address, and the way to run commands inside."""

    namespace: str
    pid1: int  # the PID namespace's first process, as this machine numbers it
    temp_dir: Path
    address: str = f"127.0.0.1:{HEAD_PORT}"
    nodes: list[dict[str, Any]] = field(default_factory=list)

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the cluster's network, PID and mount namespaces, in this cwd."""
        where = f"--wd={os.getcwd()}"
        return ["nsenter", "-t", str(self.pid1), "-n", "-p", "-m", where, "--", *argv]

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**os.environ, "RAY_ADDRESS": self.address, **(extra or {})}

    def run(
        self, argv: Sequence[str], env: dict[str, str] | None = None, **kwargs: Any
    ) -> subprocess.CompletedProcess[Any]:
        """Run ``argv`` inside (a driver, ``ray status``); ``RAY_ADDRESS`` points at the head."""
        return subprocess.run(self.command(argv), env=self.env(env), **kwargs)

    def popen(
        self, argv: Sequence[str], env: dict[str, str] | None = None, **kwargs: Any
    ) -> subprocess.Popen[Any]:
        return subprocess.Popen(self.command(argv), env=self.env(env), **kwargs)


def _ray_cli() -> str:
    ray = shutil.which("ray")
    if ray is None:
        raise RuntimeError("the ray command is not installed (pip install remotemedia[ray])")
    return ray


def _check(done: subprocess.CompletedProcess[str], what: str) -> None:
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"{what} failed (exit {done.returncode}):\n{tail}")


def _child_of(pid: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    path = Path(f"/proc/{pid}/task/{pid}/children")
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            children = path.read_text().split()
            if children:
                return int(children[0])
        time.sleep(0.02)
    raise RuntimeError("the cluster namespace did not start")


def _wait_nodes(cluster: LocalCluster, count: int, timeout: float) -> list[dict[str, Any]]:
    """Block until ``count`` nodes are alive; their resources, from a driver inside."""
    probe = (
        "import json, logging, ray\n"
        "ray.init(logging_level=logging.ERROR, log_to_driver=False)\n"
        "print(json.dumps([{'id': n['NodeID'], 'resources': n['Resources']}"
        " for n in ray.nodes() if n['Alive']]))\n"
    )
    deadline = time.monotonic() + timeout
    nodes: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        argv = [sys.executable, "-c", probe]
        done = cluster.run(argv, capture_output=True, text=True, timeout=60)
        if done.returncode == 0:
            nodes = json.loads(done.stdout.strip().splitlines()[-1])
            if len(nodes) >= count:
                return nodes
        time.sleep(0.5)
    raise RuntimeError(f"only {len(nodes)} of {count} Ray nodes came up in {timeout:g} s")


@contextlib.contextmanager
def local_cluster(
    workers: int = 1,
    head_cpus: float = 2,
    worker_cpus: float = 1,
    prefix: str = "rmray",
    start_timeout: float = 60.0,
) -> Iterator[LocalCluster]:
    """Start a head (custom resource ``head``) and ``workers`` worker nodes (``worker``, and
    ``worker<i>`` for the i-th; ``SLOTS`` units each, so ``resources={"worker": 1}`` pins a
    stage there) in a fresh namespace; stop and remove everything on exit.

    Raises RuntimeError when a node does not start (with the tail of its output).
    """
    token = secrets.token_hex(3)
    namespace = f"{prefix}{token}"
    temp_dir = Path(f"/tmp/{prefix}-{token}")  # short: Ray's socket paths must fit 107 bytes
    ray = _ray_cli()
    host: subprocess.Popen[bytes] | None = None
    made = False
    cluster: LocalCluster | None = None
    try:
        subprocess.run(["ip", "netns", "add", namespace], check=True, capture_output=True)
        made = True
        subprocess.run(["ip", "-n", namespace, "link", "set", "lo", "up"], check=True)
        pid_namespace = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
        host = subprocess.Popen(
            ["ip", "netns", "exec", namespace, *pid_namespace, sys.executable, "-c", _REAPER],
            start_new_session=True,
        )
        cluster = LocalCluster(namespace, _child_of(host.pid), temp_dir)
        common = ["--disable-usage-stats", f"--object-store-memory={OBJECT_STORE_BYTES}"]
        head = [ray, "start", "--head", f"--port={HEAD_PORT}", f"--num-cpus={head_cpus}"]
        head += ["--include-dashboard=false", f"--temp-dir={temp_dir}"]
        head += ["--resources", json.dumps({"head": SLOTS}), *common]
        done = cluster.run(head, capture_output=True, text=True, timeout=start_timeout)
        _check(done, "ray start --head")
        for i in range(workers):
            resources = {"worker": SLOTS, f"worker{i}": SLOTS}
            argv = [ray, "start", f"--address={cluster.address}", f"--num-cpus={worker_cpus}"]
            argv += ["--resources", json.dumps(resources), *common]
            done = cluster.run(argv, capture_output=True, text=True, timeout=start_timeout)
            _check(done, f"ray start --address (worker {i})")
        cluster.nodes = _wait_nodes(cluster, 1 + workers, start_timeout)
        yield cluster
    finally:
        if cluster is not None:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                cluster.run([ray, "stop", "--force"], capture_output=True, timeout=30)
        if host is not None:
            host.kill()  # its child, pid 1 of the namespace, dies with it: so does the rest
            host.wait(10)
        if made:
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        shutil.rmtree(temp_dir, ignore_errors=True)


__all__ = ["HEAD_PORT", "SLOTS", "LocalCluster", "cluster_unavailable", "local_cluster"]
