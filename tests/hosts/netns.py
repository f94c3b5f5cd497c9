"""Test hosts for WebRTC tests and benchmarks: two network namespaces joined by a veth pair.

aioice never offers 127.0.0.1 as an ICE candidate, so a server and its peers cannot meet on
loopback. ``test_hosts()`` makes a private two-host network instead (root and iproute2 needed)::

    with test_hosts() as hosts:               # server 10.213.0.1, client 10.213.0.2
        server = hosts.popen("server", [sys.executable, "-m", "stream.transport", "serve", ...])

The namespaces have only ``lo`` and their end of the veth, so no traffic can leave them; names
are unique per call, so parallel runs do not clash; everything is removed on exit, also when the
block fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000

SUBNET = "10.213.0"


def netns_unavailable() -> str | None:
    """Why test hosts cannot be made here (not root, no iproute2, no netns support), or None."""
    if os.name != "posix" or not hasattr(os, "geteuid"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    probe = f"rmprobe{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"ip netns add failed: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _enter_netns(name: str) -> None:
    """Move the calling thread (only it) into the network namespace ``name``."""
    fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        setns = getattr(os, "setns", None)  # Python 3.12+
        if setns is not None:
            setns(fd, CLONE_NEWNET)
            return
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@dataclass
class TestHosts:
    """Two hosts, ``server`` and ``client``, each a network namespace with one veth address."""

    __test__ = False  # not a pytest test class

    namespaces: dict[str, str]
    addresses: dict[str, str]
    interfaces: dict[str, str]
    processes: list[subprocess.Popen[Any]] = field(default_factory=list)

    @property
    def server_ip(self) -> str:
        return self.addresses["server"]

    @property
    def client_ip(self) -> str:
        return self.addresses["client"]

    def command(self, host: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside ``host``'s namespace."""
        return ["ip", "netns", "exec", self.namespaces[host], *argv]

    def popen(self, host: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` on ``host``; it is ended when the hosts are removed."""
        proc = subprocess.Popen(self.command(host, argv), **kwargs)
        self.processes.append(proc)
        return proc

    def run(
        self, host: str, argv: Sequence[str], **kwargs: Any
    ) -> subprocess.CompletedProcess[Any]:
        return subprocess.run(self.command(host, argv), **kwargs)

    def run_async(self, host: str, main: Callable[[], Awaitable[T]], timeout: float = 120.0) -> T:
        """Run ``asyncio.run(main())`` in a new thread that lives in ``host``'s namespace.

        Every socket that thread opens (aiortc's, aiohttp's) belongs to ``host``, so a test can
        be a peer on a test host without a subprocess. Raises what ``main`` raised, or
        TimeoutError.
        """
        outcome: dict[str, Any] = {}

        def target() -> None:
            try:
                _enter_netns(self.namespaces[host])
                outcome["value"] = asyncio.run(main())  # type: ignore[arg-type]
            except BaseException as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=target, name=f"netns {host}", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            raise TimeoutError(f"run_async on {host} did not finish in {timeout:g} s")
        if "error" in outcome:
            raise outcome["error"]
        value: T = outcome["value"]
        return value

    def stop_processes(self, timeout: float = 10.0) -> None:
        """SIGTERM the processes started here, then SIGKILL what is left after ``timeout``."""
        for proc in self.processes:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.processes:
            remaining = max(0.1, deadline - time.monotonic())
            try:
                proc.wait(remaining)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.processes.clear()


@contextlib.contextmanager
def test_hosts(prefix: str = "rm") -> Iterator[TestHosts]:
    """Create the two test hosts; remove them (and end their processes) on exit."""
    token = secrets.token_hex(3)
    names = {"server": f"{prefix}s{token}", "client": f"{prefix}c{token}"}
    links = {"server": f"{prefix}vs{token}", "client": f"{prefix}vc{token}"}  # <= 15 chars
    addresses = {"server": f"{SUBNET}.1", "client": f"{SUBNET}.2"}
    hosts = TestHosts(names, addresses, links)
    made: list[str] = []
    try:
        for ns in names.values():
            _ip("netns", "add", ns)
            made.append(ns)
        _ip("link", "add", links["server"], "type", "veth", "peer", "name", links["client"])
        for host in ("server", "client"):
            ns, link = names[host], links[host]
            _ip("link", "set", link, "netns", ns)
            _ip("-n", ns, "addr", "add", f"{addresses[host]}/24", "dev", link)
            _ip("-n", ns, "link", "set", link, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield hosts
    finally:
        hosts.stop_processes()
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        with contextlib.suppress(RuntimeError):  # gone with its namespace normally
            _ip("link", "del", links["server"])


__all__ = ["SUBNET", "TestHosts", "netns_unavailable", "test_hosts"]
