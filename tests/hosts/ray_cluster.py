"""A throwaway multi-node Ray cluster on this machine, for tests and benchmarks (root needed).

Test infrastructure: nothing of the runtime uses it (``serve --ray local`` starts a Ray of its
own through ``ray.init``).

By default Ray binds the machine's outward address. Inside a network namespace that has only
``lo``, every Ray process binds 127.0.0.1, so no cluster traffic can leave it. ``local_cluster()``
makes such a namespace, plus a PID namespace (so ``ray stop`` there sees only this cluster's
processes, and ending the namespace's first process ends every process of the cluster), then
starts a head node and worker nodes, each a separate raylet::

    with local_cluster(workers=1) as cluster:  # head has resource "head", worker i "worker"
        done = cluster.run([sys.executable, "driver.py"], capture_output=True, timeout=60)

``local_cluster(..., lan=True)`` puts each node on a host of its own instead: a network
namespace per node (``head`` 10.214.0.1, ``worker0`` 10.214.0.2, ...), plus ``peer``
(10.214.0.200) with no Ray, all joined by a bridge in a switch namespace, so the nodes talk over
a network as machines do, and WebRTC peers (which never use loopback) can reach every node.
Each namespace has only ``lo`` and its bridge port: no traffic can leave. Ray runs there with
``--node-ip-address`` set, as on a real multi-homed machine.

Drivers run inside the namespaces too (``cluster.run``/``cluster.command``, on the head unless
``host=`` says otherwise), with ``RAY_ADDRESS`` set; ``cluster.run_async("peer", main)`` runs
``main()`` on a thread in a host's network namespace. Everything is stopped and removed on exit,
also when the block fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from .netns import TestHosts, netns_unavailable

T = TypeVar("T")

HEAD_PORT = 6379  # free in a fresh namespace: nothing else listens there
OBJECT_STORE_BYTES = 150 * 1024 * 1024  # per node; Ray's default takes 30% of RAM
SLOTS = 100  # units of each node's custom resource: resources={"worker": 1} places 100 stages
LAN_SUBNET = "10.214.0"  # lan=True: head .1, worker i .(2+i), peer .200
PEER_HOST = 200

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
    """A running cluster: its hosts, head address, and the way to run commands there.

    ``hosts``: host name -> network namespace (``head``, ``worker0``..., and ``peer`` with
    ``lan=True``; all the same namespace without); ``addresses``: host name -> its address.
    """

    namespace: str  # the head's
    pid1: int  # the PID namespace's first process, as this machine numbers it
    temp_dir: Path
    address: str = f"127.0.0.1:{HEAD_PORT}"
    nodes: list[dict[str, Any]] = field(default_factory=list)
    hosts: dict[str, str] = field(default_factory=dict)
    addresses: dict[str, str] = field(default_factory=dict)

    def command(self, argv: Sequence[str], host: str = "head") -> list[str]:
        """``argv`` run on ``host``: its network namespace, the cluster's PID and mount
        namespaces, in this cwd."""
        net = f"--net=/var/run/netns/{self.hosts.get(host, self.namespace)}"
        where = f"--wd={os.getcwd()}"
        return ["nsenter", "-t", str(self.pid1), "-p", "-m", net, where, "--", *argv]

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**os.environ, "RAY_ADDRESS": self.address, **(extra or {})}

    def run(
        self,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        host: str = "head",
        **kwargs: Any,
    ) -> subprocess.CompletedProcess[Any]:
        """Run ``argv`` on ``host`` (a driver, ``ray status``); ``RAY_ADDRESS`` is the head."""
        return subprocess.run(self.command(argv, host), env=self.env(env), **kwargs)

    def popen(
        self,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        host: str = "head",
        **kwargs: Any,
    ) -> subprocess.Popen[Any]:
        return subprocess.Popen(self.command(argv, host), env=self.env(env), **kwargs)

    def signal(self, proc: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` to what ``proc`` (from ``popen``) runs: nsenter forks it and does not
        pass signals on."""
        with contextlib.suppress(RuntimeError, ProcessLookupError):
            os.kill(_child_of(proc.pid, timeout=2.0), sig)

    def stop(self, proc: subprocess.Popen[Any], timeout: float = 20.0) -> int | None:
        """SIGTERM what ``proc`` runs, wait ``timeout``, then SIGKILL it; its exit code."""
        if proc.poll() is None:
            self.signal(proc, signal.SIGTERM)
            try:
                return proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(proc, signal.SIGKILL)
                proc.kill()
        return proc.wait(10)

    def run_async(self, host: str, main: Callable[[], Awaitable[T]], timeout: float = 120.0) -> T:
        """``asyncio.run(main())`` on a thread in ``host``'s network namespace (a WebRTC peer
        without a subprocess); raises what ``main`` raised, or TimeoutError."""
        view = TestHosts(dict(self.hosts), dict(self.addresses), {})
        return view.run_async(host, main, timeout)


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


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _lan(prefix: str, token: str, names: Sequence[str]) -> tuple[dict[str, str], dict[str, str]]:
    """A namespace per host name, on one bridge (in a switch namespace): (hosts, addresses)."""
    switch = f"{prefix}sw{token}"
    _ip("netns", "add", switch)
    _ip("-n", switch, "link", "add", "br0", "type", "bridge")
    _ip("-n", switch, "link", "set", "br0", "up")
    hosts: dict[str, str] = {"switch": switch}
    addresses: dict[str, str] = {}
    for i, name in enumerate(names):
        ns = f"{prefix}{i}{token}"
        last = 1 if name == "head" else PEER_HOST if name == "peer" else 1 + i
        inside, outside = f"{prefix}v{i}{token}", f"{prefix}p{i}{token}"  # <= 15 chars
        _ip("netns", "add", ns)
        hosts[name] = ns
        _ip("link", "add", inside, "type", "veth", "peer", "name", outside)
        _ip("link", "set", inside, "netns", ns)
        _ip("link", "set", outside, "netns", switch)
        _ip("-n", switch, "link", "set", outside, "master", "br0")
        _ip("-n", switch, "link", "set", outside, "up")
        addresses[name] = f"{LAN_SUBNET}.{last}"
        _ip("-n", ns, "addr", "add", f"{addresses[name]}/24", "dev", inside)
        _ip("-n", ns, "link", "set", inside, "up")
        _ip("-n", ns, "link", "set", "lo", "up")
    return hosts, addresses


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
    lan: bool = False,
) -> Iterator[LocalCluster]:
    """Start a head (custom resource ``head``) and ``workers`` worker nodes (``worker``, and
    ``worker<i>`` for the i-th; ``SLOTS`` units each, so ``resources={"worker": 1}`` pins a
    stage there) in a fresh namespace, or with ``lan=True`` each on a host of its own (see the
    module docstring); stop and remove everything on exit.

    Raises RuntimeError when a node does not start (with the tail of its output).
    """
    token = secrets.token_hex(3)
    temp_dir = Path(f"/tmp/{prefix}-{token}")  # short: Ray's socket paths must fit 107 bytes
    ray = _ray_cli()
    host: subprocess.Popen[bytes] | None = None
    made: list[str] = []
    cluster: LocalCluster | None = None
    names = ["head", *(f"worker{i}" for i in range(workers))]
    try:
        if lan:
            made.append(f"{prefix}sw{token}")  # removed on failure even when half made
            made.extend(f"{prefix}{i}{token}" for i in range(len(names) + 1))
            hosts, addresses = _lan(prefix, token, [*names, "peer"])
        else:
            namespace = f"{prefix}{token}"
            made.append(namespace)
            _ip("netns", "add", namespace)
            _ip("-n", namespace, "link", "set", "lo", "up")
            hosts = {name: namespace for name in names}
            addresses = {name: "127.0.0.1" for name in names}
        pid_namespace = ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"]
        host = subprocess.Popen(
            ["ip", "netns", "exec", hosts["head"], *pid_namespace, sys.executable, "-c", _REAPER],
            start_new_session=True,
        )
        head_ip = addresses["head"]
        cluster = LocalCluster(
            hosts["head"],
            _child_of(host.pid),
            temp_dir,
            address=f"{head_ip}:{HEAD_PORT}",
            hosts=hosts,
            addresses=addresses,
        )
        common = ["--disable-usage-stats", f"--object-store-memory={OBJECT_STORE_BYTES}"]
        head = [ray, "start", "--head", f"--port={HEAD_PORT}", f"--num-cpus={head_cpus}"]
        head += ["--include-dashboard=false", f"--temp-dir={temp_dir}"]
        head += ["--resources", json.dumps({"head": SLOTS}), *common]
        if lan:
            head.append(f"--node-ip-address={head_ip}")
        done = cluster.run(head, capture_output=True, text=True, timeout=start_timeout)
        _check(done, "ray start --head")
        for i in range(workers):
            name = f"worker{i}"
            resources = {"worker": SLOTS, name: SLOTS}
            argv = [ray, "start", f"--address={cluster.address}", f"--num-cpus={worker_cpus}"]
            argv += ["--resources", json.dumps(resources), *common]
            if lan:
                argv.append(f"--node-ip-address={addresses[name]}")
            done = cluster.run(
                argv, capture_output=True, text=True, timeout=start_timeout, host=name
            )
            _check(done, f"ray start --address (worker {i})")
        cluster.nodes = _wait_nodes(cluster, 1 + workers, start_timeout)
        yield cluster
    finally:
        if cluster is not None:  # one PID namespace: one `ray stop` sees every node's processes
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                cluster.run([ray, "stop", "--force"], capture_output=True, timeout=30)
        if host is not None:
            host.kill()  # its child, pid 1 of the namespace, dies with it: so does the rest
            host.wait(10)
        for namespace in made:  # a namespace takes its veth ends (and their peers) with it
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True)
        if lan:  # a pair made but not yet moved into its namespaces
            for i in range(len(names) + 1):
                subprocess.run(["ip", "link", "del", f"{prefix}p{i}{token}"], capture_output=True)
        shutil.rmtree(temp_dir, ignore_errors=True)


__all__ = [
    "HEAD_PORT",
    "LAN_SUBNET",
    "SLOTS",
    "LocalCluster",
    "cluster_unavailable",
    "local_cluster",
]
